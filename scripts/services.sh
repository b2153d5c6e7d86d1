# Starts the services the tests need (sourced by scripts/test.sh): PostgreSQL from Debian's package,
# with a password for the postgres user. Safe to re-run. Mosquitto, chromedriver and Docker test
# objects are started per test by the harness.
pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$pg_version main"; then
  pg_createcluster "$pg_version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$pg_version" '$1==v && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$pg_version" main start
fi
for _ in $(seq 1 50); do
  runuser -u postgres -- psql -qAtc "select 1" >/dev/null 2>&1 && break
  sleep 0.2
done
runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'trellis'" >/dev/null
export TRELLIS_TEST_POSTGRES_URL="postgres://postgres:trellis@127.0.0.1:5432/postgres"
