#!/usr/bin/env bash
# Mutation testing (mutmut 3, from the `dev` extra) of a component's safety core.
#
#   scripts/mutation.sh producers            # mutate, test, print the summary and the survivors
#   scripts/mutation.sh producers show NAME  # the diff of one mutant
#
# mutmut copies the code it mutates into a `mutants/` directory; callstream's stage folders are
# symlinked into the package, which mutmut would copy unmutated, so the run happens in a working
# copy (MUTATION_DIR, default $TMPDIR/callstream-mutation-<component>) where the package is a real
# tree. The copy is kept between runs: mutmut re-tests only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
component="${1:-producers}"
shift || true

case "$component" in
    producers)
        mutate='"callstream/producers/redaction.py", "callstream/producers/prepare.py", "callstream/producers/deadletter.py"'
        tests='"tests/unit/test_producer_redaction.py", "tests/unit/test_producer_prepare.py",
    "tests/unit/test_producer_deadletter.py", "tests/unit/test_producer_recorder.py",
    "tests/unit/test_ingest_gateway_log.py"'
        ;;
    *)
        echo "unknown component: $component (known: producers)" >&2
        exit 2
        ;;
esac

work="${MUTATION_DIR:-${TMPDIR:-/tmp}/callstream-mutation-$component}"
mkdir -p "$work"
rm -rf "$work/callstream" "$work/tests"
cp -rL callstream "$work/callstream"   # symlinked stages become real folders
find "$work/callstream" -name __pycache__ -prune -exec rm -rf {} +
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
cat >> "$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["callstream"]
only_mutate = [$mutate]
also_copy = ["mutmut_pytest9.py"]
pytest_add_cli_args_test_selection = [$tests]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "mutmut_pytest9", "-q"]
on_dependency_change = "rerun"  # a changed test may kill an old survivor: test everything again
EOF

cd "$work"
mutmut="$repo/.venv/bin/mutmut"
if [ "${1:-}" = "show" ]; then
    exec "$mutmut" show "$2"
fi
"$mutmut" run --max-children "${MUTATION_JOBS:-2}" >mutmut-run.log 2>&1 || {
    tail -40 mutmut-run.log
    exit 1
}
"$mutmut" export-cicd-stats >/dev/null
echo "== $component: mutation summary (mutants/mutmut-cicd-stats.json)"
cat mutants/mutmut-cicd-stats.json
echo
echo "== surviving mutants (scripts/mutation.sh $component show NAME for a diff)"
"$mutmut" results || true
