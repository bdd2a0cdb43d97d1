"""What an action writes to ORCH_RESULT is untrusted: a FIFO, NaN or deep JSON is ignored, noted.

NaN and Infinity went into the rule context and the stored step; JSON nested 100,000 deep
crashed the attempt with RecursionError. A FIFO at ORCH_RESULT must not hang the engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.core.models import TaskSpec
from orchestration.engine.actions import ActionRequest, run_action
from tests.helpers import PY

WRITERS = {
    "nan": "open(path, 'w').write('{\"confidence\": NaN}')",
    "infinity": "open(path, 'w').write('{\"cost\": -Infinity}')",
    "deep": "open(path, 'w').write('{\"a\": ' + '[' * 100000 + ']' * 100000 + '}')",
    "huge-int": "open(path, 'w').write('{\"n\": ' + '9' * 5000 + '}')",
}


@pytest.mark.parametrize(("kind", "writer"), list(WRITERS.items()), ids=list(WRITERS))
def test_an_unusable_result_file_is_ignored_with_a_note(
    tmp_path: Path, kind: str, writer: str
) -> None:
    script = f"import os\npath = os.environ['ORCH_RESULT']\n{writer}\n"
    spec = TaskSpec.model_validate(
        {"id": "a", "action": {"kind": "shell", "run": [PY, "-c", script]}}
    )
    outcome = run_action(ActionRequest("run-1", spec, 1, tmp_path, 60.0))
    assert outcome.exit_code == 0, outcome.output_tail
    assert outcome.result == {}, outcome.result
    assert "ORCH_RESULT ignored" in outcome.output_tail, outcome.output_tail


def test_a_plain_result_file_is_read(tmp_path: Path) -> None:
    script = "import os; open(os.environ['ORCH_RESULT'], 'w').write('{\"confidence\": 0.8}')"
    spec = TaskSpec.model_validate(
        {"id": "a", "action": {"kind": "shell", "run": [PY, "-c", script]}}
    )
    outcome = run_action(ActionRequest("run-1", spec, 1, tmp_path, 60.0))
    assert outcome.result == {"confidence": 0.8}


def test_a_fifo_result_file_does_not_hang_the_engine(tmp_path: Path) -> None:
    script = "import os; os.mkfifo(os.environ['ORCH_RESULT'])"
    spec = TaskSpec.model_validate(
        {"id": "a", "action": {"kind": "shell", "run": [PY, "-c", script]}}
    )
    outcome = run_action(ActionRequest("run-1", spec, 1, tmp_path, 60.0))
    assert outcome.exit_code == 0 and outcome.result == {}
