#!/usr/bin/env bash
# The system packages the tests use, installed when missing: Debian's Chromium (the report page
# test), iproute2 and util-linux (`ip`, `unshare`, `nsenter`: the multi-node Ray tests run in a
# private network namespace), and dataset-fashion-mnist (the real-data tests and the
# Fashion-MNIST config read its IDX files). `make test` and .ci/run call this; with everything present it
# does nothing. Installs with apt-get as root or through sudo; otherwise names what to install.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
{ command -v unshare && command -v nsenter; } >/dev/null 2>&1 || missing+=(util-linux)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    missing+=(dataset-fashion-mnist)
((${#missing[@]})) || exit 0

refuse() {
    echo "error: the tests need the system packages ${missing[*]}, and $1." >&2
    echo "Install them, then run make test again: sudo apt-get install ${missing[*]}" >&2
    exit 2
}
command -v apt-get >/dev/null 2>&1 || refuse "this machine has no apt-get"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    refuse "installing them needs root or sudo without a password"
fi
echo "installing system packages for the tests: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
