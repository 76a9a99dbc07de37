#!/usr/bin/env bash
# One-shot for the compose stack (service es-init), idempotent: safe to run on every `up`.
#
# - sets the password of the built-in `kibana_system` user, which Kibana connects as;
# - creates the role `callstream_writer` (create, write and read `<prefix>-*` indices, nothing
#   else) and the user `callstream` that the workers connect as;
# - creates the role `callstream_setup` (index templates, ILM policies, aliases on `<prefix>-*`)
#   and the user `callstream_setup` that only `callstream setup` connects as.
#
# Passwords go into JSON as they are: keep them free of double quotes and backslashes.
set -euo pipefail

ES_URL="${ES_URL:-http://elasticsearch:9200}"
INDEX_PREFIX="${INDEX_PREFIX:-callstream}"
: "${ELASTIC_PASSWORD:?ELASTIC_PASSWORD is required}"
: "${KIBANA_SYSTEM_PASSWORD:?KIBANA_SYSTEM_PASSWORD is required}"
: "${CALLSTREAM_USER_PASSWORD:?CALLSTREAM_USER_PASSWORD is required}"
: "${CALLSTREAM_SETUP_PASSWORD:?CALLSTREAM_SETUP_PASSWORD is required}"

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

# Workers: write documents (creating daily indices as they go) and read them (reports, alerts).
request PUT /_security/role/callstream_writer "{
  \"cluster\": [\"monitor\"],
  \"indices\": [
    {\"names\": [\"${INDEX_PREFIX}-*\"],
     \"privileges\": [\"create_index\", \"auto_configure\", \"index\", \"read\", \"view_index_metadata\"]}
  ]
}"

# Setup: templates, retention policies and aliases, once per deployment or upgrade.
request PUT /_security/role/callstream_setup "{
  \"cluster\": [\"monitor\", \"manage_index_templates\", \"manage_ilm\"],
  \"indices\": [
    {\"names\": [\"${INDEX_PREFIX}-*\"], \"privileges\": [\"manage\", \"create_index\"]}
  ]
}"

request PUT /_security/user/callstream_setup "{
  \"password\": \"${CALLSTREAM_SETUP_PASSWORD}\",
  \"roles\": [\"callstream_setup\"],
  \"full_name\": \"callstream setup\"
}"

request PUT /_security/user/callstream "{
  \"password\": \"${CALLSTREAM_USER_PASSWORD}\",
  \"roles\": [\"callstream_writer\"],
  \"full_name\": \"callstream workers\"
}"

echo "es-init: kibana_system password set; roles and users callstream (writer) and callstream_setup in place"
