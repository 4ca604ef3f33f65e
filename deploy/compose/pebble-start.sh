#!/bin/sh
# Entry point of the `pebble` service of compose.yaml: Debian's Pebble test CA
# (never a real CA) for trying the distributed stack on one Docker host.
#
# - Its HTTPS listener gets a certificate for the name `pebble`, signed by a
#   CA made once and kept in the volume at /pebble; the issuers trust it
#   through CERTFLEET_CA_ROOT=/pebble/ca.pem.
# - HTTP-01 is validated on port 80 of each name, resolved by Docker's DNS:
#   the responder service carries the certificate names as network aliases.
set -eu

dir=/pebble
if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/listener.pem" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca-key.pem"
    openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days 3650 \
        -subj "/CN=certfleet compose pebble listener CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.pem"
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/listener-key.pem"
    openssl req -new -key "$dir/listener-key.pem" -subj "/CN=pebble" -out "$dir/listener.csr"
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:pebble,DNS:localhost,IP:127.0.0.1" >"$dir/listener.ext"
    openssl x509 -req -in "$dir/listener.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -sha256 -days 3650 -extfile "$dir/listener.ext" \
        -out "$dir/listener.pem"
    rm -f "$dir/listener.csr" "$dir/listener.ext" "$dir/ca.srl"
    chmod 0644 "$dir/ca.pem"
fi

cat >"$dir/pebble-config.json" <<JSON
{
  "pebble": {
    "listenAddress": "0.0.0.0:14000",
    "managementListenAddress": "0.0.0.0:15000",
    "certificate": "$dir/listener.pem",
    "privateKey": "$dir/listener-key.pem",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON

export PEBBLE_VA_NOSLEEP="${PEBBLE_VA_NOSLEEP:-1}"
exec pebble -config "$dir/pebble-config.json"
