#!/usr/bin/env bash
# Make sure Debian's redis-server is installed; the Redis-backed tests start their
# own instance on 127.0.0.1. In CI a missing server is an error, never a skip.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  exit 0
fi
if [ -n "${CI:-}" ]; then
  echo "redis-server is missing and cannot be installed (need root and apt-get)" >&2
  exit 1
fi
echo "warning: redis-server is missing; the Redis tests will fail (apt-get install redis-server)" >&2
