#!/usr/bin/env bash
# Builds Periscope's runtime image FROM scratch with buildah: the host, the first-party exporter
# plugins, the shared libraries they link against (read from their ELF dependencies with ldd), CA
# roots, a passwd naming uid 65532, the image's default config and the quick-start manifests.
#
#   bash deploy/image/build.sh [--profile release|debug] [--tag NAME]
#
# --profile release (the default) builds with `cargo build --release`; --profile debug takes what
# `cargo build --workspace` left in target/debug (the test suite does, to stay fast). Elsewhere,
# `docker build`/`podman build` take the same Containerfile and staged directory: run this script
# with BUILDER=docker (or podman).
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
tag=localhost/periscope:dev
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

plugins=(file prometheus prometheus_remote_write elasticsearch)
packages=(-p periscope-core -p periscope-exporter-file -p periscope-exporter-prometheus
          -p periscope-exporter-prometheus-remote-write -p periscope-exporter-elasticsearch)
case "$profile" in
    release) cargo build --release --locked "${packages[@]}"; bin=target/release ;;
    debug) cargo build --locked "${packages[@]}"; bin=target/debug ;;
    *) echo "--profile is release or debug, not $profile" >&2; exit 2 ;;
esac

builder="${BUILDER:-buildah}"
if ! command -v "$builder" >/dev/null; then
    echo "$builder is missing: install it with \`apt-get install buildah\` (Debian/Ubuntu)" >&2
    exit 1
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/plugins" "$stage/rootfs/etc/ssl/certs" "$stage/home" "$stage/quickstart"
cp "$bin/periscope" "$stage/periscope"
elves=("$bin/periscope")
for plugin in "${plugins[@]}"; do
    cp "$bin/libperiscope_exporter_$plugin.so" "$stage/plugins/"
    elves+=("$bin/libperiscope_exporter_$plugin.so")
done
chmod 0755 "$stage/periscope" "$stage"/plugins/*.so
# Line tables and debug info stay in target/; the image ships the code alone.
if [ "$profile" = release ]; then
    strip --strip-debug "$stage/periscope" "$stage"/plugins/*.so
fi

# Every shared library the binary and the plugins need, at the path the loader looks for it.
libraries="$(ldd "${elves[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)"
for library in $libraries; do
    cp --parents -L "$library" "$stage/rootfs/"
done

cp /etc/ssl/certs/ca-certificates.crt "$stage/rootfs/etc/ssl/certs/" 2>/dev/null ||
    echo "warning: no /etc/ssl/certs/ca-certificates.crt; the image has no CA roots" >&2
echo 'root:x:0:0:root:/:/sbin/nologin
nonroot:x:65532:65532:nonroot:/var/lib/periscope:/sbin/nologin' > "$stage/rootfs/etc/passwd"
echo 'root:x:0:
nonroot:x:65532:' > "$stage/rootfs/etc/group"
cp deploy/image/periscope.toml "$stage/"
cp -r examples/quickstart/manifests "$stage/quickstart/"
cp deploy/image/Containerfile "$stage/"

version="$(sed -n 's/^version = "\(.*\)"/\1/p' core/Cargo.toml | head -1)"
[ -n "$version" ] || version="$(sed -n '/\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision"
      --build-arg "SOURCE=https://example.invalid/periscope" -f "$stage/Containerfile" -t "$tag")
if [ "$builder" = buildah ]; then
    buildah --storage-driver vfs bud --isolation chroot --layers=false "${args[@]}" "$stage"
else
    "$builder" build "${args[@]}" "$stage"
fi
echo "built $tag" >&2
