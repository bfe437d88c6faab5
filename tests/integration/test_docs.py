"""docs/options.md is generated from the programs' --help (their option tables): it must be current."""

import subprocess

from harness import BUILD_DIR, ROOT


def test_options_reference_is_current(tmp_path):
    committed = (ROOT / "docs" / "options.md").read_text()
    subprocess.run([str(ROOT / "scripts" / "gen-options-doc.sh"), str(BUILD_DIR)], check=True, cwd=ROOT)
    try:
        assert (ROOT / "docs" / "options.md").read_text() == committed, \
            "docs/options.md is out of date: run scripts/gen-options-doc.sh and commit it"
    finally:
        (ROOT / "docs" / "options.md").write_text(committed)
