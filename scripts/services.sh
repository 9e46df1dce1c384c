#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on the URLs the dialer uses (defaults:
# 127.0.0.1:5432 and 127.0.0.1:6379), and RabbitMQ when CELERY_BROKER_URL names it
# (amqp://...@127.0.0.1 or localhost). Starts the local services if they are installed and
# stopped; installs them with apt-get when run as root and they are missing; otherwise says
# exactly what to run.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]]; }
wait_for() { for _ in $(seq 1 50); do "$1" && return 0; sleep 0.2; done; return 1; }
as_root() { [[ "$(id -u)" == "0" ]]; }

apt_install() {
  as_root || return 1
  command -v apt-get >/dev/null || return 1
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql || {
      echo "PostgreSQL is not running. Start it: docker compose up -d postgres (or install postgresql)" >&2
      exit 1
    }
  fi
  if as_root; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
    # A fresh Debian cluster only knows the postgres role: give root trust access as CI does.
    if ! psql -h 127.0.0.1 -U root -d postgres -c 'select 1' >/dev/null 2>&1; then
      su postgres -c "psql -qc \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='root') THEN CREATE ROLE root SUPERUSER LOGIN; END IF; END\\\$\\\$\"" || true
    fi
  else
    echo "PostgreSQL is stopped. Run: sudo pg_ctlcluster \$(ls /etc/postgresql) main start" >&2
    exit 1
  fi
  wait_for pg_up || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
fi

if ! redis_up; then
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server || {
      echo "Redis is not running. Start it: docker compose up -d redis (or install redis-server)" >&2
      exit 1
    }
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --maxmemory-policy noeviction >/dev/null
  wait_for redis_up || { echo "Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
fi
broker="${CELERY_BROKER_URL:-}"
if [[ "$broker" == amqp://* || "$broker" == amqps://* || "$broker" == pyamqp://* ]]; then
  # amqp://user:pass@host:port/vhost: the host and port after the last "@".
  hostport="${broker#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
  rabbit_host="${hostport%%:*}"; rabbit_port="${hostport##*:}"
  [[ "$rabbit_port" == "$hostport" ]] && rabbit_port=5672
  rabbit_up() { (exec 3<>"/dev/tcp/$rabbit_host/$rabbit_port") 2>/dev/null; }
  if ! rabbit_up; then
    if [[ "$rabbit_host" != "127.0.0.1" && "$rabbit_host" != "localhost" ]]; then
      echo "RabbitMQ does not answer at $rabbit_host:$rabbit_port (CELERY_BROKER_URL)" >&2
      exit 1
    fi
    if ! command -v rabbitmq-server >/dev/null; then
      apt_install rabbitmq-server || {
        echo "RabbitMQ is not running. Start it: docker compose --profile rabbitmq up -d rabbitmq (or install rabbitmq-server)" >&2
        exit 1
      }
    fi
    as_root || { echo "RabbitMQ is stopped. Run: sudo rabbitmq-server -detached" >&2; exit 1; }
    rabbitmq-server -detached >/dev/null 2>&1 || true
    rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1 || true
    for _ in $(seq 1 150); do rabbit_up && break; sleep 0.2; done
    rabbit_up || { echo "RabbitMQ did not come up on $rabbit_host:$rabbit_port" >&2; exit 1; }
  fi
  echo "PostgreSQL, Redis and RabbitMQ answer."
else
  echo "PostgreSQL and Redis answer."
fi
