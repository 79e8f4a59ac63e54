"""Training on several processes with DistributedDataParallel: the train stage relaunches itself under torchrun
when runtime.gpus asks for more than one; each process takes its slice of every global batch, gradients are
averaged across processes, metrics are gathered, and only the first process logs and writes outputs."""

import contextlib
import os
import signal
import sys
import threading
import time

import numpy as np
import torch
import torch.distributed as dist

from landmark.errors import UserError


def training_processes(setting, device: torch.device) -> int:
    """How many processes `runtime.gpus` asks for: `auto` is one per visible GPU (one on the CPU). On the CPU a
    number above one runs that many gloo processes, which is how the distributed path is tested without GPUs."""
    if setting == "auto":
        return max(torch.cuda.device_count(), 1) if device.type == "cuda" else 1
    if device.type == "cuda" and setting > torch.cuda.device_count():
        raise UserError(f"params.yaml runtime.gpus: {setting}, but torch sees {torch.cuda.device_count()} GPU(s)")
    return setting


def split_batch(batch_size: int, processes: int) -> int:
    """Each process's share of a batch."""
    if batch_size % processes:
        raise UserError(f"batch_size {batch_size} does not split over {processes} processes; make it a multiple")
    return batch_size // processes


def relaunch_under_torchrun(processes: int, module: str, nodes: int = 1, node_rank: int = 0, rendezvous="") -> None:
    """Replace this process by torchrun running `python -m module` (same arguments) on `processes` processes of
    this machine. With several nodes, torchrun's static rendezvous at `rendezvous` (host:port of node 0, which
    runs global rank 0, the process that writes the outputs): every node runs the same command with its own
    node_rank, and the ranks follow the node ranks."""
    if nodes == 1:
        where = ["--standalone"]
    else:
        host, port = rendezvous.rsplit(":", 1)
        where = [f"--nnodes={nodes}", f"--node-rank={node_rank}", f"--master-addr={host}", f"--master-port={port}"]
    command = [
        sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={processes}",
        "-m", module, *sys.argv[1:],
    ]  # fmt: skip
    sys.stdout.flush()
    os.environ["LANDMARK_TORCHRUN_PID"] = str(os.getpid())  # exec keeps the process id: torchrun's, from now on
    os.execv(sys.executable, command)


def die_with_launcher(launcher_pid: int) -> None:
    """Kill this process as soon as launcher_pid (torchrun) is no longer its parent. torchrun starts each training
    process in a session of its own, so a `kill -9` of the stage would otherwise leave them training on, writing
    the outputs and removing the checkpoint behind DVC's back, and racing the rerun; PyTorch's DataLoader workers
    watch their parent the same way. SIGKILL, so that the checkpoint is left as a killed stage leaves it."""

    def watch():
        while os.getppid() == launcher_pid:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-torchrun", daemon=True).start()


class Ranks:
    """This process's place among the training processes (torchrun's RANK, WORLD_SIZE, LOCAL_RANK), and how many
    of them share this machine (LOCAL_WORLD_SIZE: fewer than the world when several nodes train together)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.local = int(os.environ.get("LOCAL_RANK", 0))
        self.on_this_machine = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @contextlib.contextmanager
    def joined(self, device: torch.device):
        """Inside, this process is in the process group; yields its device (its own GPU under DDP)."""
        if self.world == 1:
            yield device
            return
        die_with_launcher(int(os.environ.get("LANDMARK_TORCHRUN_PID", os.getppid())))
        if device.type == "cuda":
            device = torch.device("cuda", self.local)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        try:
            yield device
        finally:
            dist.destroy_process_group()

    def wrap(self, model, device: torch.device):
        """The model under DDP (BatchNorm synchronised across GPUs; the CPU has no SyncBatchNorm, so there each
        process normalises over its own slice), or the model itself on one process."""
        if self.world == 1:
            return model
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # static_graph: the same parameters take part every step, and a backbone's unused head (timm keeps e.g.
        # ConvNeXt's head norm when we only call its features) is found once instead of failing the step.
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None, static_graph=True
        )

    def my_slice(self, batch_size: int) -> slice:
        share = split_batch(batch_size, self.world)
        return slice(self.rank * share, (self.rank + 1) * share)

    def cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensors of every process (the same shape on each), concatenated in rank order."""
        if self.world == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def my_indices(self, size: int) -> np.ndarray:
        """This process's share of `size` items for evaluation: every world-th one, from its rank."""
        return np.arange(self.rank, size, self.world)

    def interleave(self, array):
        """Each process's array of my_indices(size) put back together in item order, on every process."""
        if self.world == 1 or array is None:
            return array
        parts = [None] * self.world
        dist.all_gather_object(parts, array)
        whole = np.empty(sum(len(part) for part in parts), dtype=parts[0].dtype)
        for rank, part in enumerate(parts):
            whole[rank :: self.world] = part
        return whole
