#!/usr/bin/env bash
# One-shot for the compose stack (service es-init), idempotent: safe to run on every `up`.
#
# - sets the password of the built-in `kibana_system` user, which Kibana connects as;
# - creates the role `callstream_writer` (index templates, ILM policies, and everything on
#   `<prefix>-*` indices, nothing else) and the user `callstream` that the workers connect as.
#
# Passwords go into JSON as they are: keep them free of double quotes and backslashes.
set -euo pipefail

ES_URL="${ES_URL:-http://elasticsearch:9200}"
INDEX_PREFIX="${INDEX_PREFIX:-callstream}"
: "${ELASTIC_PASSWORD:?ELASTIC_PASSWORD is required}"
: "${KIBANA_SYSTEM_PASSWORD:?KIBANA_SYSTEM_PASSWORD is required}"
: "${CALLSTREAM_USER_PASSWORD:?CALLSTREAM_USER_PASSWORD is required}"

request() {  # method path [json body]
  local method="$1" path="$2" body="${3:-}"
  local args=(-sS -u "elastic:${ELASTIC_PASSWORD}" -X "$method" -H 'Content-Type: application/json'
              -o /tmp/es-init-response -w '%{http_code}')
  [[ -n "$body" ]] && args+=(-d "$body")
  local status
  status="$(curl "${args[@]}" "${ES_URL}${path}")"
  if [[ "$status" != 2* ]]; then
    echo "es-init: ${method} ${path} answered ${status}: $(cat /tmp/es-init-response)" >&2
    return 1
  fi
}

for attempt in $(seq 1 60); do
  if request GET "/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null; then
    break
  fi
  [[ "$attempt" == 60 ]] && { echo "es-init: Elasticsearch at ${ES_URL} never became ready" >&2; exit 1; }
  sleep 2
done

request POST /_security/user/kibana_system/_password "{\"password\": \"${KIBANA_SYSTEM_PASSWORD}\"}"

request PUT /_security/role/callstream_writer "{
  \"cluster\": [\"monitor\", \"manage_index_templates\", \"manage_ilm\", \"manage_pipeline\"],
  \"indices\": [
    {\"names\": [\"${INDEX_PREFIX}-*\"], \"privileges\": [\"all\"]}
  ]
}"

request PUT /_security/user/callstream "{
  \"password\": \"${CALLSTREAM_USER_PASSWORD}\",
  \"roles\": [\"callstream_writer\"],
  \"full_name\": \"callstream workers\"
}"

echo "es-init: kibana_system password set; role callstream_writer and user callstream in place"
