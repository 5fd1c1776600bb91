#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run against — kube-apiserver and etcd —
# from the Go module proxy, and caches the binaries under
#   ${PERISCOPE_CACHE:-$HOME/.cache/periscope}/controlplane/<k8s-version>/bin/
# The last line printed is that bin directory.
#
# Idempotent: when the cached binaries were built from the same go.mod/go.sum files (a stamp
# beside them records their hash) and still run, nothing is built and it takes well under a
# second. Go's own caches (GOMODCACHE, GOCACHE) keep their defaults under $HOME, so even a
# rebuild after the stamp changes is quick on a machine that built once.
#
# The versions live in the two throwaway modules next to this script:
#   tests/controlplane/go.mod        k8s.io/kubernetes (+ its staging modules pinned to v0.X.Y)
#   tests/controlplane/etcd/go.mod   go.etcd.io/etcd/server/v3
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Only the local Go; never fetch another toolchain (the modules ask for go 1.26.0).
export GOTOOLCHAIN=local
# Modules come through Go's ordinary default (GOPROXY=https://proxy.golang.org) and are checked
# against the committed go.sum files, which are complete (`go mod tidy`), so the default
# -mod=readonly holds: a build never rewrites them.

required_version() { # go.mod module: the version go.mod requires of module
    awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}
k8s_version="$(required_version "$here/go.mod" k8s.io/kubernetes)"
etcd_version="$(required_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
if [[ -z "$k8s_version" || -z "$etcd_version" ]]; then
    echo "build.sh: cannot read the versions from $here/go.mod and $here/etcd/go.mod" >&2
    exit 1
fi

bin="${PERISCOPE_CACHE:-$HOME/.cache/periscope}/controlplane/$k8s_version/bin"
mkdir -p "$bin"

# What the cached binaries were built from: the module files and the Go version.
stamp_of() { # dir
    { cat "$1/go.mod" "$1/go.sum"; go env GOVERSION; } | sha256sum | cut -d' ' -f1
}

up_to_date() { # name stamp
    [[ -x "$bin/$1" && -f "$bin/$1.stamp" && "$(cat "$bin/$1.stamp")" == "$2" ]] \
        && "$bin/$1" --version >/dev/null 2>&1
}

build() { # name module-dir package ldflags
    local name="$1" dir="$2" pkg="$3" ldflags="$4" stamp start
    stamp="$(stamp_of "$dir")"
    if up_to_date "$name" "$stamp"; then
        echo "$name: cached in $bin" >&2
        return
    fi
    echo "$name: building $pkg (the first build takes several minutes)…" >&2
    start=$SECONDS
    # Into a private name first: a concurrent run or an interrupted build never leaves a
    # half-written binary under the real name.
    (cd "$dir" && go build -trimpath -ldflags="-s -w $ldflags" -o "$bin/$name.tmp.$$" "$pkg")
    mv -f "$bin/$name.tmp.$$" "$bin/$name"
    echo "$stamp" >"$bin/$name.stamp"
    echo "$name: built in $((SECONDS - start)) s" >&2
}

# kube-apiserver reports its version from ldflags, as a release build does (otherwise /version
# says v0.0.0-master).
major="${k8s_version#v}"
major="${major%%.*}"
minor="${k8s_version#v*.}"
minor="${minor%%.*}"
version_pkg=k8s.io/component-base/version
build kube-apiserver "$here" k8s.io/kubernetes/cmd/kube-apiserver \
    "-X $version_pkg.gitVersion=$k8s_version -X $version_pkg.gitMajor=$major \
     -X $version_pkg.gitMinor=$minor -X $version_pkg.gitTreeState=clean"
build etcd "$here/etcd" go.etcd.io/etcd/server/v3 ""

echo "kube-apiserver $k8s_version, etcd $etcd_version" >&2
echo "$bin"
