#!/usr/bin/env bash
# Builds the Debian package of chargebridge with cargo-deb (installed if missing).
#
#   packaging/build-deb.sh                       # release build for this machine
#   packaging/build-deb.sh --target aarch64-unknown-linux-gnu   # cross (see packaging/README.md)
#   packaging/build-deb.sh --profile dev --fast  # quick unoptimised package (tests)
#
# Every argument is passed to `cargo deb`. The .deb lands in target/debian/ (or
# target/<triple>/debian/) and its path is printed last.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deb 3.x (2.x works too): `--profile`, `--no-build`, `--fast`, `--target`, and conf-files under /etc.
CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-^3}"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb ${CARGO_DEB_VERSION}" >&2
    cargo install --locked cargo-deb --version "${CARGO_DEB_VERSION}"
fi
command -v dpkg-deb >/dev/null 2>&1 || echo "build-deb: note: dpkg-deb not found; cargo-deb builds the archive itself" >&2

out="$(cargo deb "$@" | tail -n 1)"
echo "build-deb: contents of ${out}:" >&2
if command -v dpkg-deb >/dev/null 2>&1; then
    dpkg-deb --info "${out}" >&2
    dpkg-deb --contents "${out}" >&2
fi
echo "${out}"
