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
"$mutmut" run --max-children "${MUTATION_JOBS:-2}" >mutmut-run.log 2>&1 || {
    tail -40 mutmut-run.log
    exit 1
}
"$mutmut" export-cicd-stats >/dev/null
echo "== $component: mutation summary (mutants/mutmut-cicd-stats.json)"
cat mutants/mutmut-cicd-stats.json
echo
echo "== per module: mutants, then each status"
# A mutant's name is `<module>.x_<function>__mutmut_<n>` or `<module>.xǁ<class>ǁ<method>__mutmut_<n>`.
"$mutmut" results --all true | awk '
    { name = $1; sub(/:$/, "", name); status = $2; for (i = 3; i <= NF; i++) status = status " " $i
      module = name; sub(/\.x(_|ǁ).*$/, "", module)
      total[module]++; count[module "\t" status]++ }
    END { for (m in total) { line = m ": " total[m]
              for (k in count) { split(k, part, "\t"); if (part[1] == m) line = line ", " part[2] " " count[k] }
              print line } }' | sort
echo
echo "== surviving mutants (scripts/mutation.sh $component show NAME for a diff)"
"$mutmut" results || true
