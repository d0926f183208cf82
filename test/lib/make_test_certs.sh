#!/usr/bin/env bash
# test/lib/make_test_certs.sh: a throwaway certificate authority and a server certificate
# for 127.0.0.1, made with the openssl CLI, for the HTTPS tests of the mock Halo server.
#
#   bash test/lib/make_test_certs.sh DIR
#
# Writes into DIR: ca.pem (the CA certificate, what halo_itsm.ca_file points to), ca.key,
# server.pem and server.key (subjectAltName IP:127.0.0.1 only, signed by the CA: for
# mock_halo.py --tls-cert/--tls-key). Every file is world-readable so that the postgres OS
# user can read ca.pem; the keys are test keys and protect nothing.
set -euo pipefail

dir=${1:?usage: make_test_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
    -subj "/CN=halo_itsm test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca.key -out ca.pem 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 \
    -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null

printf '%s\n' "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:127.0.0.1" >server.ext

openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
    -days 2 -extfile server.ext -out server.pem 2>/dev/null

rm -f server.csr server.ext ca.srl
chmod 755 "$dir"
chmod 644 ca.pem ca.key server.pem server.key
