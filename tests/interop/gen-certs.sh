#!/usr/bin/env bash
# Writes a throwaway CA and a server certificate for localhost / 127.0.0.1 into DIR:
#   DIR/ca.pem  DIR/ca.key  DIR/server.pem (leaf + CA chain)  DIR/server.key
# ECDSA P-256: rustls/webpki and Python's ssl both accept it; webpki requires the host name in
# subjectAltName (CN is ignored) and refuses a CA certificate as the end entity.
set -euo pipefail
dir="${1:?usage: gen-certs.sh DIR}"
mkdir -p "$dir"
cd "$dir"
umask 077
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.pem -days 2 -subj "/CN=chargebridge interop test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
cat >server.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out server-leaf.pem -days 2 -sha256 -extfile server.ext 2>/dev/null
cat server-leaf.pem ca.pem >server.pem
chmod 644 ca.pem server.pem
rm -f server.csr server.ext ca.srl
