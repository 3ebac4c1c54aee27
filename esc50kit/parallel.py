"""Train a run's models side by side, each in its own process with its share of the cores.

On a small CPU, two processes of one thread each train more clips per second than one
process of two threads (benchmarks/results/quick-tuning-esc50.txt, round 12): a step of the
CPU recipe is a chain of small convolutions that a second thread speeds up by far less than
2x. So :func:`esc50kit.experiment.run_experiment` (``workers``) can train the models that
do not wait on one another (every split's seeds; a split of one model) ``workers`` at a
time, and a split's student as soon as its seeds are done. Each model writes its own folder
as it would in turn (checkpoints every epoch, its metrics and predictions when done), so an
interrupted run resumes as before, and the run's ensembles are made from those folders
afterwards, in split order. The models are the same models: only the number of threads
that compute them changes (which moves floating-point sums, as any thread count does).
"""
from __future__ import annotations

import _thread
import contextlib
import multiprocessing
import signal
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any, NamedTuple, Sequence

from .experiment import _Inputs, _run_one_split, _split_rows, _teacher_probs, _train_member
from .run_folder import RunFolder
from .splits import FoldSplit


# Training clips per model (rows x epochs) below which starting a worker process (about 4 s:
# Python, torch, the features) costs about what training beside another model saves.
MIN_CLIPS = 20_000


def auto_workers(*, ready: int, clips_per_model: int, on_cpu: bool, threads: int) -> int:
    """``workers="auto"``: 2 where two at a time pays (a CPU of 2 or more ``threads``, 2 or
    more models ``ready`` to train side by side, each of at least :data:`MIN_CLIPS`
    training clips), else 1."""
    return 2 if on_cpu and threads >= 2 and ready >= 2 and clips_per_model >= MIN_CLIPS else 1


class Task(NamedTuple):
    """One model to train: the folder ``name`` of ``split`` (the split itself for a split
    of one model), its ``seed``, and whether it is the split's ``student``."""

    split: FoldSplit
    name: str
    seed: int
    student: bool


def plan(run: RunFolder, splits: Sequence[FoldSplit], inputs: _Inputs
         ) -> tuple[list[Task], dict[str, tuple[Task, set[str]]]]:
    """The models still to train: (those ready now, in split order; each split's student
    with the names of the seeds it waits for). Finished models are left out."""
    ready, waiting = [], {}
    for split in splits:
        names = run.member_names(split.name)
        if run.split_done(split.name):
            continue
        if len(names) == 1:
            ready.append(Task(split, split.name, inputs.seed, False))
            continue
        seeds = names[:inputs.profile.seeds]
        todo = [Task(split, n, inputs.seed + k, False) for k, n in enumerate(seeds)
                if not run.split_done(n)]
        ready += todo
        if inputs.profile.student > 0 and not run.split_done(names[-1]):
            student = Task(split, names[-1], inputs.seed + len(seeds), True)
            if todo:
                waiting[split.name] = (student, {t.name for t in todo})
            else:
                ready.append(student)
    return ready, waiting


def train_all(run: RunFolder, splits: Sequence[FoldSplit], inputs: _Inputs,
              split_warnings: dict[str, list[str]], *, workers: int, threads: int,
              keep_last_checkpoints: bool = False) -> None:
    """Train every model :func:`plan` lists, ``workers`` processes at a time with ``threads``
    torch threads each (the last one running gets ``threads * workers`` from the moment it is
    the last); a student starts as soon as its seeds are done (it reads their chosen
    checkpoints, not their last). A line per model as it finishes (with
    ``inputs.progress``). The first error, a worker that dies, or Ctrl-C stops every worker
    and is raised here; what finished stays written and a rerun resumes the rest.

    Raises:
        RuntimeError: a worker died without a word (killed, out of memory, or a script
            without an ``if __name__ == "__main__":`` guard, which each worker imports).
    """
    from multiprocessing.connection import wait
    from tqdm.auto import tqdm

    ready, waiting = plan(run, splits, inputs)
    ready = deque(ready)
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch
    running: dict[Any, tuple[Any, Any, Task, Any]] = {}  # sentinel -> (process, pipe, task, pipe)
    share = replace(inputs, progress=False)
    with tqdm(total=len(ready) + len(waiting), desc=f"models ({workers} at a time)",
              unit="model", disable=not inputs.progress) as bar:
        try:
            while ready or running:
                while ready and len(running) < workers:
                    task = ready.popleft()
                    proc, receive, widen = _start(context, share, run, task, split_warnings[
                        task.split.name], threads=threads, keep=keep_last_checkpoints)
                    running[proc.sentinel] = (proc, receive, task, widen)
                if len(running) == 1 and not ready:  # the last one running: every thread
                    widen = next(iter(running.values()))[3]
                    if not widen.closed:  # once
                        with contextlib.suppress(OSError):  # (it may have just finished)
                            widen.send(threads * workers)
                        widen.close()
                for sentinel in wait(list(running)):
                    proc, receive, task, widen = running.pop(sentinel)
                    widen.close()
                    line = _outcome(proc, receive, task)
                    if inputs.progress:
                        bar.write(line)
                    bar.update()
                    student, seeds = waiting.get(task.split.name, (None, set()))
                    seeds.discard(task.name)
                    if student is not None and not seeds:  # before the next split's seeds
                        ready.appendleft(waiting.pop(task.split.name)[0])
        finally:  # an error or Ctrl-C: stop the others (their checkpoints stay)
            for proc, receive, _, widen in running.values():
                proc.terminate()
                proc.join()
                receive.close()
                widen.close()


def _start(context, inputs: _Inputs, run: RunFolder, task: Task, warnings: list[str], *,
           threads: int, keep: bool) -> tuple[Any, Any, Any]:
    """A worker process training ``task`` with ``threads`` threads: (the process, the pipe
    its result arrives on, the pipe that can give it more threads)."""
    receive, send = context.Pipe(duplex=False)
    widen_in, widen = context.Pipe(duplex=False)
    proc = context.Process(target=_train_task, daemon=True, name=f"esc50kit {task.name}",
                           args=(send, widen_in, inputs, run, task, warnings, threads, keep))
    proc.start()
    send.close()
    widen_in.close()
    return proc, receive, widen


def _outcome(proc, receive, task: Task) -> str:
    """The line a finished worker sent; its error raised here."""
    try:
        message = receive.recv() if receive.poll() else None
    except EOFError:  # the worker closed its end without sending
        message = None
    proc.join()
    receive.close()
    if message is None:
        raise RuntimeError(
            f"the worker process that trained {task.name} exited with code {proc.exitcode} "
            "without a result (killed, out of memory, or a script without an "
            "`if __name__ == \"__main__\":` guard, which each worker imports). What finished "
            "is kept: run again with the same run name to resume, or with workers=1 to "
            "train in turn in this process.")
    if isinstance(message, BaseException):
        raise message
    return message


def _train_task(send, widen, inputs: _Inputs, run: RunFolder, task: Task, warnings: list[str],
                threads: int, keep_last_checkpoint: bool) -> None:
    """In a worker process: train one model as :func:`esc50kit.experiment._run_one_split`
    would in turn, with ``threads`` torch threads (more if a number arrives on ``widen``),
    then send a line saying how it scored (or the error)."""
    import torch

    torch.set_num_threads(threads)
    widened = _widen_on_request(widen)
    try:
        line = _train_one(inputs, run, task, warnings, keep_last_checkpoint)
        if widened:
            line += f"; {widened[0]} threads for its last {time.monotonic() - widened[1]:.0f} s"
        send.send(line)
    except BaseException as error:  # noqa: BLE001 - handed to the parent, which raises it
        send.send(error)
    finally:
        send.close()


def _widen_on_request(widen) -> list:
    """Take the number of torch threads that arrives on the pipe ``widen`` (the parent sends
    it when this model is the last one running, so that no core sits idle). torch takes its
    thread count in the thread that computes: a watcher thread has the main thread set it
    between two Python lines, as a signal would. Returns a list that then holds (threads,
    when). POSIX (SIGUSR1); elsewhere the model keeps the threads it started with."""
    import torch

    wanted: list[int] = []
    widened: list = []
    signum = getattr(signal, "SIGUSR1", None)
    if signum is None:
        return widened

    def apply(*_) -> None:
        torch.set_num_threads(wanted[0])
        widened[:] = [wanted[0], time.monotonic()]

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):  # EOF: the parent closed it unsent
            wanted.append(widen.recv())
            _thread.interrupt_main(signum)

    signal.signal(signum, apply)
    threading.Thread(target=watch, name="esc50kit widen", daemon=True).start()
    return widened


def _train_one(inputs: _Inputs, run: RunFolder, task: Task, warnings: list[str],
               keep_last_checkpoint: bool) -> str:
    if task.name == task.split.name:  # a split of one model: the split itself
        metrics, _ = _run_one_split(task.split, inputs, run, warnings)
    else:
        rows = _split_rows(task.split, inputs)
        teacher = None
        if task.student:
            seeds = run.member_names(task.split.name)[:inputs.profile.seeds]
            teacher = _teacher_probs(run, seeds, inputs.X[rows[0]], inputs.profile.training)
        metrics, _ = _train_member(task.name, task.seed, inputs, run, rows, warnings,
                                   member=True, teacher=teacher)
    if not keep_last_checkpoint:  # done: metrics.json marks it, resume never reads it
        run.drop_last_checkpoint(task.name)
    role = "test" if metrics["test_accuracy"] is not None else "val"
    return (f"{task.name}: {role} acc {metrics[f'{role}_accuracy']:.3f}, "
            f"{metrics['train_seconds']:.0f} s at {metrics['samples_per_s']:.0f} clips/s")
