#!/usr/bin/env bash
# Idempotent development setup: virtualenv + project, Debian PostgreSQL/Redis, Kafka jars.
# Every step checks first and does nothing when its result is already in place.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=$ROOT/.cache
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/local/kafka/pom.xml)
mkdir -p "$CACHE"

step() { printf '\n==> %s\n' "$*"; }
elapsed() { printf '    (%ss)\n' "$(( $(date +%s) - $1 ))"; }

step "Python virtualenv (.venv) and the project with its dev and plot extras"
t=$(date +%s)
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip==25.2
  .venv/bin/python -m pip install -q -e '.[dev,plot]'
  echo "$stamp" > .venv/.installed
else
  echo "    up to date"
fi
elapsed "$t"

step "PostgreSQL and Redis servers (Debian packages)"
t=$(date +%s)
missing=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The packages start system-wide servers on the default ports; we run our own, so stop theirs.
  $SUDO service postgresql stop >/dev/null 2>&1 || true
  $SUDO service redis-server stop >/dev/null 2>&1 || true
else
  echo "    already installed"
fi
elapsed "$t"

step "Apache Kafka $KAFKA_VERSION jars from Maven Central (.cache/kafka-$KAFKA_VERSION)"
t=$(date +%s)
LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
if [ ! -f "$LIBS/.complete" ]; then
  command -v mvn >/dev/null || { echo "mvn not found: install Maven (apt-get install maven)" >&2; exit 1; }
  rm -rf "$LIBS"
  mvn -B -q -f deploy/local/kafka/pom.xml \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS"
  touch "$LIBS/.complete"
fi
echo "    $(ls "$LIBS" | wc -l) jars"
elapsed "$t"

step "Helm (for the deploy tests: helm lint / helm template) in .cache/bin"
t=$(date +%s)
HELM_VERSION=v3.21.4
if [ ! -x "$CACHE/bin/helm" ]; then
  command -v go >/dev/null || { echo "go not found: install Go 1.22+ (it builds helm)" >&2; exit 1; }
  echo "    building helm $HELM_VERSION with go install (a few minutes the first time)"
  GOBIN=$PWD/.cache/bin go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
echo "    $("$CACHE/bin/helm" version --short 2>/dev/null || echo missing)"
elapsed "$t"
