"""Loaded by a test's ``calcinet-train`` process (this folder on its PYTHONPATH): SIGKILL the
process at one exact point, so a resume test pins the kill instead of racing a timer.

``CALCINET_KILL_AT=<where>:<epoch>[:<run folder name>]``, ``<where>`` one of:
- ``before_commit``: the epoch's ``last.ckpt`` is written, its metrics not yet logged;
- ``after_commit``: both done.
With a run folder name (``trial_1``), only the run in that folder is killed (a sweep runs its
trials one after another in one process).
"""

import os
import signal

_spec = os.environ.get("CALCINET_KILL_AT")
if _spec:
    _where, _epoch, *_folder = _spec.split(":")
    from calcinet.training import callbacks as _callbacks

    _save = _callbacks.ModelCheckpoint._save_checkpoint
    _epoch_end = _callbacks.ModelCheckpoint.on_train_epoch_end

    def _in_folder(callback):
        return not _folder or os.path.basename(os.path.dirname(callback.dirpath)) == _folder[0]

    def _save_checkpoint(self, trainer, filepath):
        _save(self, trainer, filepath)
        if (_where == "before_commit" and filepath.endswith("last.ckpt")
                and trainer.current_epoch == int(_epoch) and _in_folder(self)):
            os.kill(os.getpid(), signal.SIGKILL)

    def _on_train_epoch_end(self, trainer, pl_module):
        _epoch_end(self, trainer, pl_module)
        if _where == "after_commit" and trainer.current_epoch == int(_epoch) and _in_folder(self):
            os.kill(os.getpid(), signal.SIGKILL)

    _callbacks.ModelCheckpoint._save_checkpoint = _save_checkpoint
    _callbacks.ModelCheckpoint.on_train_epoch_end = _on_train_epoch_end
