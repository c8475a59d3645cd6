#!/usr/bin/env bash
# Make the compose set's test PKI and secrets in one folder (default deploy/.secrets, gitignored;
# DMGW_SECRETS or the first argument names another). Nothing here is ever baked into an image: the
# folder is mounted at run time (docker-compose.yml, `secrets:` and `env_file:`).
#
#   ca.pem, ca.key                  a test CA (EC P-256), valid 30 days
#   gateway.pem/.key                gateway, localhost, 127.0.0.1 (admin API, LAN and WAN faces)
#   dms-1, dms-2, bootstrap .pem/.key   the WAN servers (their names, localhost, 127.0.0.1)
#   devices.pem/.key                the simulated devices' consent callback servers
#   admin-token                     the admin API's bearer token
#   dms-1.master-key, dms-2.master-key  each DM Server's key for derived client passwords
#   gateway.env                     DMGW_BOOTSTRAP_AUTH_SECRET and DMGW_PUSH_PIN (env_file)
#   gateway-accounts.toml           the gateway's factory account for dms-1 (derived password)
#   bootstrap-profiles.toml         the bootstrap server's profile for dms-2 and the trusted gateway
#
# An existing folder with a ca.pem is kept as it is (pass --force to make everything anew).
# Needs openssl. Run as root, the files are given to uid 65532 (the images' user) and kept 0600;
# otherwise they are made world-readable (0644) inside a 0700 folder, so that the containers' user
# can read the bind-mounted files while other host users cannot reach them.
set -euo pipefail
cd "$(dirname "$0")/.."

force=false
dir="${DMGW_SECRETS:-deploy/.secrets}"
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    -*) echo "setup.sh: unknown flag $arg" >&2; exit 2 ;;
    *) dir="$arg" ;;
  esac
done

# The cast (kept in step with docker-compose.yml and deploy/device-sim/*.toml).
GATEWAY_DEV_ID="urn:dmgw:compose-gateway"
GATEWAY_ACCOUNT="dmgw-compose-gateway"
DEVICE_HOSTS=(thermostat plug meter late-1 late-2 late-3)

if [[ -s $dir/ca.pem ]] && ! $force; then
  echo "setup.sh: $dir already holds a CA; keeping it (--force makes everything anew)"
  exit 0
fi
command -v openssl >/dev/null || { echo "setup.sh: openssl is needed" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir"
chmod 0700 "$dir"
umask 077

hex() { openssl rand -hex "$1"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=dmgw compose test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null

# leaf NAME HOST... : NAME.pem/NAME.key for these host names (plus localhost and 127.0.0.1).
leaf() {
  local name="$1"
  shift
  local san="" h
  for h in "$@" localhost; do san+="DNS:$h,"; done
  san+="IP:127.0.0.1"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -out "$dir/$name.pem" -extfile <(printf '%s\n' \
      "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth") 2>/dev/null
  rm -f "$dir/$name.csr"
}
leaf gateway gateway
leaf dms-1 dms-1
leaf dms-2 dms-2
leaf bootstrap bootstrap
leaf devices "${DEVICE_HOSTS[@]}"
rm -f "$dir/ca.srl"

hex 24 >"$dir/admin-token"
hex 32 >"$dir/dms-1.master-key"
hex 32 >"$dir/dms-2.master-key"
bootstrap_password="$(hex 16)"
push_pin="$(printf '%08d' $((16#$(hex 4) % 100000000)))"
printf 'DMGW_BOOTSTRAP_AUTH_SECRET=%s\nDMGW_PUSH_PIN=%s\n' "$bootstrap_password" "$push_pin" >"$dir/gateway.env"

# dm_server::derive_password: base64url_nopad(HMAC-SHA256(master_key, server_id + "|" + name)).
derive() {
  printf '%s' "$2|$3" | openssl dgst -sha256 -mac HMAC -macopt "key:$(tr -d '[:space:]' <"$1")" -binary |
    openssl base64 -A | tr '+/' '-_' | tr -d '='
}

cat >"$dir/gateway-accounts.toml" <<EOF
# The gateway's factory account: dms-1 knows the gateway from the start (made by deploy/setup.sh).
[[account]]
server_id = "dms-1"
name = "operator DM Server"
addr = "https://dms-1:8443/dm"
auth_type = "DIGEST"
auth_name = "$GATEWAY_ACCOUNT"
auth_secret = "$(derive "$dir/dms-1.master-key" dms-1 "$GATEWAY_ACCOUNT")"
EOF

cat >"$dir/bootstrap-profiles.toml" <<EOF
# The bootstrap server's profiles (made by deploy/setup.sh): it bootstraps gateways for dms-2,
# sharing dms-2's master key, and trusts the compose set's gateway.
[[servers]]
server_id = "dms-2"
address = "https://dms-2:8443/dm"
auth_type = "DIGEST"
name = "vendor DM Server"
master_key_file = "dms-2.master-key"

[[gateways]]
gateway_id = "$GATEWAY_DEV_ID"
pin = "$push_pin"
push_urls = ["https://gateway:8444/wan/v1/bootstrap"]
username = "$GATEWAY_ACCOUNT"
password = "$bootstrap_password"
servers = ["dms-2"]
EOF

if [[ $(id -u) == 0 ]]; then
  chown -R 65532:65532 "$dir"
  chmod 0600 "$dir"/*
else
  chmod 0644 "$dir"/*
  chmod 0600 "$dir/ca.key"
fi
echo "setup.sh: test CA, certificates and secrets in $dir"
