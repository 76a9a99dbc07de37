#!/usr/bin/env bash
# Mutation testing (mutmut 3, from the `dev` extra) of callstream's cores. See docs/mutation.md.
#
#   scripts/mutation.sh producers|streams|contract   # mutate, test; print the summary, per module, and the survivors
#   scripts/mutation.sh streams show NAME            # the diff of one mutant
#   scripts/mutation.sh streams tests NAME           # the tests that run against one mutant
#
# mutmut copies the code it mutates into a `mutants/` directory; callstream's stage folders are
# symlinked into the package, which mutmut would copy unmutated, so the run happens in a working
# copy (MUTATION_DIR, default $TMPDIR/callstream-mutation-<worktree>-<component>) where the package
# is a real tree. The copy is kept between runs: mutmut re-tests only what changed (every mutant
# again when a test changed). MUTATION_JOBS (default 2) is how many mutants are tested at once.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
component="${1:-producers}"
shift || true

case "$component" in
    producers)
        mutate=(callstream/producers/{redaction,prepare,deadletter}.py)
        tests=(tests/unit/test_producer_{redaction,prepare,deadletter,recorder}.py tests/unit/test_ingest_gateway_log.py)
        ;;
    streams)
        mutate=(callstream/streams/{windows,pricing,dedup,enrich,sketch,clock,partials,keycap,process}.py)
        tests=(tests/unit/test_{windows,enrich,pricing,dedup,sketch}.py
            tests/unit/test_stream_{clock,partials,keycap,process}.py tests/property/test_windows_merge.py)
        ;;
    contract)
        mutate=(callstream/producers/contract.py)
        tests=(tests/unit/test_contract.py tests/property/test_contract_roundtrip.py)
        ;;
    *)
        echo "unknown component: $component (known: producers, streams, contract)" >&2
        exit 2
        ;;
esac

toml_list() {  # "a" "b" -> "a", "b"
    local out="" item
    for item in "$@"; do out="$out${out:+, }\"$item\""; done
    printf '%s' "$out"
}

work="${MUTATION_DIR:-${TMPDIR:-/tmp}/callstream-mutation-$(basename "$repo")-$component}"
mutmut="$repo/.venv/bin/mutmut"
case "${1:-}" in  # questions about the last run: the copy stays as it is
    show) cd "$work" && exec "$mutmut" show "$2" ;;
    tests) cd "$work" && exec "$mutmut" tests-for-mutant "$2" ;;
esac
mkdir -p "$work"
rm -rf "$work/callstream" "$work/tests"
cp -rL callstream "$work/callstream"   # symlinked stages become real folders
find "$work/callstream" -name __pycache__ -prune -exec rm -rf {} +
# mutmut skips decorated classes and functions (dataclasses, properties, validators, caches): the
# copy spells those decorators as plain calls, so that their code is mutated too.
(cd "$work" && "$repo/.venv/bin/python" "$repo/scripts/mutation_undecorate.py" "${mutate[@]}")
cp -r tests "$work/tests"
find "$work/tests" -name __pycache__ -prune -exec rm -rf {} +
cp pyproject.toml "$work/pyproject.toml"
# mutmut 3.7 (the newest that installs beside faust-streaming's click<8.4) reads `item._nodeid`,
# which pytest 9 no longer sets: a three-line plugin gives it back.
cat > "$work/mutmut_pytest9.py" <<'PLUGIN'
def pytest_collection_modifyitems(items):
    for item in items:
        item._nodeid = item.nodeid
PLUGIN
cat >> "$work/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["callstream"]
only_mutate = [$(toml_list "${mutate[@]}")]
also_copy = ["mutmut_pytest9.py"]
pytest_add_cli_args_test_selection = [$(toml_list "${tests[@]}")]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "mutmut_pytest9", "-q"]
on_dependency_change = "rerun"  # a changed test may kill an old survivor: test everything again
TOML

cd "$work"
if [ -n "${MUTATION_FRESH:-}" ]; then
    rm -rf mutants   # every mutant tested again, from scratch
fi
# mutmut keeps a verdict until the mutated function changes, even when the tests change, and maps
# tests to functions once per test name. So when a test file changed since the last run, the map
# is collected again and every mutant that survived (or had no test) is tested again.
tests_sha="$(find tests -name '*.py' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
retest=""
if [ -d mutants ] && [ "$(cat tests.sha256 2>/dev/null)" != "$tests_sha" ]; then
    rm -f mutants/mutmut-stats.json
    retest=1
fi
run_mutmut() {
    "$mutmut" run --max-children "${MUTATION_JOBS:-2}" "$@" >>mutmut-run.log 2>&1 || {
        tail -40 mutmut-run.log
        exit 1
    }
}
: >mutmut-run.log
run_mutmut
if [ -n "$retest" ]; then
    mapfile -t again < <("$mutmut" results | awk '$2 == "survived" || $2 $3 == "notests" { sub(/:$/, "", $1); print $1 }')
    if [ "${#again[@]}" -gt 0 ]; then
        run_mutmut "${again[@]}"
    fi
fi
echo "$tests_sha" >tests.sha256
"$mutmut" export-cicd-stats >/dev/null
echo "== $component: mutation summary (mutants/mutmut-cicd-stats.json)"
cat mutants/mutmut-cicd-stats.json
echo
echo "== per module: mutants, then each status"
# A mutant's name is `<module>.x_<function>__mutmut_<n>` or `<module>.xǁ<class>ǁ<method>__mutmut_<n>`.
"$mutmut" results --all true | awk '
    { name = $1; sub(/:$/, "", name); status = $2; for (i = 3; i <= NF; i++) status = status " " $i
      module = name; sub(/\.x(_|ǁ).*$/, "", module)
      total[module]++; count[module, status]++; seen[status] = 1 }
    END { n = split("killed|timeout|survived|no tests|suspicious", order, "|")
          for (s in seen) { known = 0; for (i = 1; i <= n; i++) if (order[i] == s) known = 1; if (!known) order[++n] = s }
          for (m in total) { line = m ": " total[m]
              for (i = 1; i <= n; i++) if ((m, order[i]) in count) line = line ", " order[i] " " count[m, order[i]]
              print line } }' | sort
echo
echo "== surviving mutants (scripts/mutation.sh $component show NAME for a diff)"
"$mutmut" results || true
