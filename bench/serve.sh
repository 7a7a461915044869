#!/usr/bin/env bash
# Feed serving throughput: wrk against calbridge's feed app (uvicorn, one worker) serving a
# 2,000-event feed, beside nginx serving the same bytes, in the same run. 200s and 304s.
# Everything binds to 127.0.0.1 on free ports and is stopped by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DURATION=${DURATION:-5s}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

PYTHONPATH=. "$PY" bench/serve_fixture.py "$work/feed.ics" > "$work/app.out" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/app.out" ] && break; sleep 0.1; done
read -r APP_PORT SECRET ETAG EVENTS < "$work/app.out"

NGINX_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/www" "$work/tmp"
cp "$work/feed.ics" "$work/www/feed.ics"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  types { text/calendar ics; }
  server { listen 127.0.0.1:$NGINX_PORT; root $work/www; etag on; }
}
CONF
nginx -c "$work/nginx.conf" &
pids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/feed.ics" && break; sleep 0.05; done
NGINX_TAG=$(curl -sI "http://127.0.0.1:$NGINX_PORT/feed.ics" | awk -F': ' 'tolower($1)=="etag"{print $2}' | tr -d '\r')

rate() { wrk -t2 -c10 -d"$DURATION" "$@" | awk '/Requests\/sec/{print $2}'; }
APP_URL="http://127.0.0.1:$APP_PORT/feeds/bench/$SECRET.ics"
NGX_URL="http://127.0.0.1:$NGINX_PORT/feed.ics"
app200=$(rate "$APP_URL"); ngx200=$(rate "$NGX_URL")
app304=$(rate -H "If-None-Match: $ETAG" "$APP_URL"); ngx304=$(rate -H "If-None-Match: $NGINX_TAG" "$NGX_URL")
size=$(stat -c %s "$work/feed.ics")
echo "feed: $EVENTS events, $size bytes; wrk -t2 -c10 -d$DURATION on loopback"
printf '%-6s %14s %14s %8s\n' "" "calbridge r/s" "nginx r/s" "ratio"
printf '%-6s %14s %14s %8.3f\n' "200" "$app200" "$ngx200" "$(echo "$app200 / $ngx200" | bc -l)"
printf '%-6s %14s %14s %8.3f\n' "304" "$app304" "$ngx304" "$(echo "$app304 / $ngx304" | bc -l)"
