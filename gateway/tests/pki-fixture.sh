# Builds a test CA, a server certificate it signed (localhost, 127.0.0.1),
# an OCSP response for it and client certificates, in the current
# directory (openssl CLI).
set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=Test CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
mkdir -p newcerts && : > index.txt && echo 1000 > serial
cat > ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = .
database = index.txt
new_certs_dir = newcerts
serial = serial
certificate = ca.crt
private_key = ca.key
default_md = sha256
default_days = 30
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
CNF
openssl ca -batch -config ca.cnf -in server.csr -out server.crt -notext 2>/dev/null
openssl ocsp -issuer ca.crt -cert server.crt -reqout req.der -no_nonce 2>/dev/null
openssl ocsp -index index.txt -rsigner ca.crt -rkey ca.key -CA ca.crt -reqin req.der -respout resp.der -ndays 1 2>/dev/null >/dev/null
cat server.crt ca.crt > chain.pem
# A client certificate of the same CA (mutual TLS to the admin API), and
# one of another CA.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj "/CN=operator" -addext "extendedKeyUsage=clientAuth" 2>/dev/null
openssl ca -batch -config ca.cnf -in client.csr -out client.crt -notext 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout stranger.key -out stranger.crt -days 30 -subj "/CN=stranger" -addext "extendedKeyUsage=clientAuth" 2>/dev/null
