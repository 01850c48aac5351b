"""PPO's critic loss under 2D sequence parallelism.

PPO's critic loss (`ValueLoss`, every masked token) trains under sequence parallelism exactly as
in one process: 2 gloo processes, the ring and the all-to-all (tests/train/seqpar_value_worker.py),
loss and every gradient within 1e-5. A reward model's loss (one token per sequence) is
tests/train/test_seqpar_reward_loss.py.
"""

from tests.train import seqpar_value_worker as worker
from tests.train.seqpar_train_worker import spawn_errors

TOLERANCE = 1e-5


def test_value_loss_under_sequence_parallelism_equals_one_process(tmp_path):
    errors = spawn_errors(worker.run, tmp_path, 2)
    assert len(errors) == len(worker.LAYOUTS)
    for line, error in errors:
        assert error <= TOLERANCE, line

