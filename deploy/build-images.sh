#!/usr/bin/env bash
# Build the four dmgw images without pulling anything:
#   1. static binaries: cargo build --release --target x86_64-unknown-linux-musl (one invocation);
#      with --in-docker, instead inside deploy/docker/Dockerfile.build (needs a registry for its
#      rust base image; for machines without a Rust toolchain);
#   2. stage a small build context (target/docker-context: the binaries, /etc/passwd and group,
#      the CA bundle, an empty /data);
#   3. docker build deploy/docker/Dockerfile once per target (FROM scratch: nothing to pull).
# Images: dmgw/{gateway,dm-server,bootstrap-server,device-sim,otlp-sink}:${DMGW_IMAGE_TAG:-local}
# (otlp-sink: the OTLP/HTTP trace receiver that stands in for Jaeger offline).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
TAG="${DMGW_IMAGE_TAG:-local}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
CONTEXT="$TARGET_DIR/docker-context"
BINS=(dmgw dm-server bootstrap-server device-sim otlp-sink)
in_docker=false
for arg in "$@"; do
  case "$arg" in
    --in-docker) in_docker=true ;;
    -h | --help)
      sed -n '2,10p' "$0"
      exit 0
      ;;
    *)
      echo "build-images.sh: unknown argument $arg" >&2
      exit 2
      ;;
  esac
done
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" # the classic builder: no buildx needed

rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/bin" "$CONTEXT/etc/ssl/certs" "$CONTEXT/data"

if $in_docker; then
  echo "== building the binaries in deploy/docker/Dockerfile.build"
  docker build -f deploy/docker/Dockerfile.build -t dmgw/build:"$TAG" .
  cid="$(docker create dmgw/build:"$TAG")"
  trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
  for b in "${BINS[@]}"; do docker cp "$cid:/out/$b" "$CONTEXT/bin/$b"; done
  docker cp "$cid:/etc/ssl/certs/ca-certificates.crt" "$CONTEXT/etc/ssl/certs/ca-certificates.crt"
else
  echo "== static binaries ($TARGET)"
  if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
  fi
  if ! command -v musl-gcc >/dev/null 2>&1; then
    echo "musl-gcc is missing (ring, aws-lc-sys and libsqlite3-sys compile C): apt-get install musl-tools" >&2
    exit 1
  fi
  CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$TARGET" \
    -p gateway -p dm-server -p bootstrap-server -p device-sim -p telemetry --features telemetry/receiver --bins
  for b in "${BINS[@]}"; do cp "$TARGET_DIR/$TARGET/release/$b" "$CONTEXT/bin/$b"; done
  bundle=/etc/ssl/certs/ca-certificates.crt
  if [[ ! -s $bundle ]]; then
    echo "$bundle is missing: apt-get install ca-certificates" >&2
    exit 1
  fi
  cp "$bundle" "$CONTEXT/etc/ssl/certs/ca-certificates.crt"
fi
strip "$CONTEXT"/bin/* # line tables are not needed in the images
for b in "${BINS[@]}"; do
  if ldd "$CONTEXT/bin/$b" 2>&1 | grep -q '=>'; then
    echo "$b is dynamically linked; the images need static binaries" >&2
    exit 1
  fi
done
cp deploy/docker/rootfs/etc/passwd deploy/docker/rootfs/etc/group "$CONTEXT/etc/"

echo "== images"
for t in gateway dm-server bootstrap-server device-sim otlp-sink; do
  if ! out="$(docker build -q -f deploy/docker/Dockerfile --target "$t" -t "dmgw/$t:$TAG" "$CONTEXT" 2>&1)"; then
    printf '%s\n' "$out" >&2
    exit 1
  fi
done
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^dmgw/.*:$TAG " | sort
