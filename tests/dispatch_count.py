"""The ops a call sends through the dispatcher, for the work-per-call budgets of docs/ops.md.

Views, and `_unsafe_view` (a reshape of a fresh tensor: a view in all but name), run no kernel
and are not counted as compute."""

from torch.utils._python_dispatch import TorchDispatchMode

NO_KERNEL = {"aten::_unsafe_view"}


class RecordOps(TorchDispatchMode):
    """The qualified names of the ops that reach the dispatcher's Python mode, in order."""

    def __init__(self):
        super().__init__()
        self.names = []
        self.views = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        self.names.append(name)
        if func.is_view or name in NO_KERNEL:
            self.views.add(name)
        return func(*args, **(kwargs or {}))

    def compute_ops(self):
        return [name for name in self.names if name not in self.views]
