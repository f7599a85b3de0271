"""Reading README shell blocks: fences, exemptions, exit codes, expected output."""
from pathlib import Path

from tests.readme_blocks import shell_blocks

TEXT = '''# t

```sh
guard runs          # a comment
guard run -- false  # exit 1
echo a \\
  b
```

```output
a b
```

```sh no-run
pip install .
```

  ```sh
  guard status
  ```

```yaml
max_usd: 1
```
'''


def test_blocks_commands_exit_codes_and_output(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(TEXT)
    blocks = shell_blocks(readme)
    assert [b.exempt for b in blocks] == [False, True, False]
    first = blocks[0]
    assert [c.exit_code for c in first.commands] == [0, 1, 0]
    assert first.commands[2].text == "echo a \n  b"
    assert first.commands[1].line == 5
    assert first.expected_output == ["a b"]
    assert blocks[2].commands[0].text == "guard status"   # an indented block, dedented
    assert blocks[1].expected_output == []
