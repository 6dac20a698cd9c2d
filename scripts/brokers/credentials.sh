# Sourced by scripts/brokers.sh: the certificates, passwords and tokens of the brokers' secured
# listeners (Kafka SASL_SSL with SCRAM users, Pulsar TLS with token authentication), made on
# first use into $credentials_dir and kept (idempotent: nothing existing is remade).
#
#   ca.crt ca.key                  the local CA both brokers' server certificate chains up to
#   server.crt server.key          127.0.0.1 / localhost (subjectAltName), signed by the CA
#   server.pem                     server.key + server.crt: Kafka's PEM keystore
#   client.crt client.key          a client certificate for mutual TLS, signed by the CA
#   untrusted-ca.crt               a second CA that signed nothing the brokers present (a client
#                                  trusting only it must refuse them)
#   kafka-scram-user               the SCRAM user (SCRAM-SHA-256 and -512, same password)
#   kafka-scram-password           its password (random)
#   pulsar-token-secret.key        the HMAC key Pulsar verifies tokens with (random, 32 bytes)
#   pulsar-token                   a token for the role the tests use (no expiry)
#   pulsar-token-expired           the same role, expired an hour before it was made
#   pulsar-token-wrong-key         the same role, signed with another key
#   pulsar-admin-token             the broker's own client role (standalone talks to itself)
#   oauth2-client.json             OAuth2 client credentials (client_id, client_secret), in the
#                                  form Pulsar's clients read a credentials file
#   oauth2-clients.json            the local OAuth2 issuer's clients: {client_id: client_secret}
# Keys are PKCS#8 and unencrypted: both brokers read them so, and they never leave the dev dir.

# Writes a JWT (HS256) for `subject` signed with the key in `key_file`, expiring at `exp`
# (seconds since the epoch; empty for none), to `out`.
write_token() {
    local key_file=$1 subject=$2 exp=$3 out=$4
    python3 - "$key_file" "$subject" "$exp" >"$out" <<'PY'
import base64, hashlib, hmac, json, sys
key_file, subject, exp = sys.argv[1:4]
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
claims = {"sub": subject}
if exp:
    claims["exp"] = int(exp)
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
payload = b64(json.dumps(claims, separators=(",", ":")).encode())
with open(key_file, "rb") as f:
    key = f.read()
signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
sys.stdout.write(f"{header}.{payload}.{b64(signature)}")
PY
}

# A CA (self-signed) named `name` in `dir`: name.key, name.crt.
make_ca() {
    local dir=$1 name=$2 subject=$3
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "$subject" \
        -keyout "$dir/$name.key" -out "$dir/$name.crt" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

# A certificate `name` for `subject` signed by the CA in `dir`, with the extensions `extensions`.
make_signed() {
    local dir=$1 name=$2 subject=$3 extensions=$4
    openssl req -newkey rsa:2048 -nodes -subj "$subject" \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 3650 -extfile <(printf '%s\n' "$extensions") -out "$dir/$name.crt" 2>/dev/null
    rm -f "$dir/$name.csr"
}

# The OAuth2 client of the local issuer (brokers.sh's `oauth2`), added to credentials made
# before it existed; the tokens the issuer gives it are signed with Pulsar's token key.
ensure_oauth2_credentials() {
    local dir=$1 secret
    [[ -f $dir/oauth2-client.json && -f $dir/oauth2-clients.json ]] && return 0
    secret=$(openssl rand -hex 24 | tr -d '\n')
    (
        umask 077
        printf '{"client_id":"sluice-oauth2","client_secret":"%s"}\n' "$secret" >"$dir/oauth2-client.json.partial"
        printf '{"sluice-oauth2":"%s"}\n' "$secret" >"$dir/oauth2-clients.json"
        mv "$dir/oauth2-client.json.partial" "$dir/oauth2-client.json"
    )
}

ensure_credentials() {
    local dir=$credentials_dir
    if [[ -f $dir/.complete ]]; then
        ensure_oauth2_credentials "$dir"
        return 0
    fi
    command -v openssl >/dev/null || die "openssl is needed to make the brokers' certificates (apt-get install openssl)"
    local partial=$dir.partial
    rm -rf "$partial"
    mkdir -p "$partial"
    chmod 700 "$partial"
    make_ca "$partial" ca "/CN=Sluice development CA"
    make_signed "$partial" server "/CN=localhost" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
basicConstraints=CA:FALSE"
    make_signed "$partial" client "/CN=sluice-client" \
        "extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE"
    cat "$partial/server.key" "$partial/server.crt" >"$partial/server.pem"
    make_ca "$partial" untrusted-ca "/CN=Sluice untrusted CA"
    rm -f "$partial/untrusted-ca.key" "$partial/ca.srl"
    echo sluice >"$partial/kafka-scram-user"
    openssl rand -hex 24 | tr -d '\n' >"$partial/kafka-scram-password"
    openssl rand 32 >"$partial/pulsar-token-secret.key"
    openssl rand 32 >"$partial/other-secret.key"
    write_token "$partial/pulsar-token-secret.key" sluice-tests "" "$partial/pulsar-token"
    write_token "$partial/pulsar-token-secret.key" sluice-tests "$(($(date +%s) - 3600))" "$partial/pulsar-token-expired"
    write_token "$partial/other-secret.key" sluice-tests "" "$partial/pulsar-token-wrong-key"
    write_token "$partial/pulsar-token-secret.key" pulsar-admin "" "$partial/pulsar-admin-token"
    rm -f "$partial/other-secret.key"
    ensure_oauth2_credentials "$partial"
    # Written last, so an interrupted run is redone, never trusted.
    touch "$partial/.complete"
    rm -rf "$dir"
    mv "$partial" "$dir"
    say "made the secured listeners' certificates, SCRAM password and tokens in $dir"
}

# The `--add-scram` arguments of Kafka's storage format: the SCRAM user, both mechanisms.
kafka_scram_arguments() {
    local user password mechanism
    user=$(<"$credentials_dir/kafka-scram-user")
    password=$(<"$credentials_dir/kafka-scram-password")
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
        printf '%s\n' --add-scram "$mechanism=[name=$user,password=$password]"
    done
}
