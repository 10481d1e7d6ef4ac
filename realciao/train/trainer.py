"""The training loop: plain PyTorch with Accelerate (DDP, multi-node, CPU gloo).

Data flows one way: planned crops -> degradation on the training device -> optional
pool -> generator -> losses. All randomness is drawn from generators seeded by
(seed, micro-step, rank), so a resumed run draws exactly what the uninterrupted run
would have drawn; model, optimiser, scheduler, EMA, scaler and pool states come from
the checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader

from realciao.allocator import keep_freed_memory
from realciao.archs import build_generator
from realciao.archs.discriminator import UNetDiscriminatorSN
from realciao.autoprecision import decide_precision
from realciao.checkpoint import load_generator, read_state, save_generator
from realciao.degradations import degrade, load_recipe, sharpen_gt
from realciao.degradations.specs import Recipe
from realciao.devices import AUTO, PRECISIONS, configure_threads, cpu_model
from realciao.errors import RealciaoError
from realciao.files import TEMPORARY_SUFFIX, remove_stale, temporary_name
from realciao.train import state as checkpoints
from realciao.train import steps
from realciao.train.config import DataOptions, TrainConfig
from realciao.train.data import (
    CropDataset,
    PlannedBatches,
    batch_plan,
    collate,
    gather_sources,
    pair_groups,
    paired_sources,
)
from realciao.train.ema import ModelEMA
from realciao.train.losses import DISCRIMINATOR_MULTIPLE, LossSet
from realciao.train.optim import build_optimizer, build_scheduler
from realciao.train.pool import PairPool
from realciao.train.runlog import RunLog, flat_options, get_logger, versions
from realciao.train.steps import MicroBatch, StepParts, training_probe
from realciao.train.validation import validate

LOGGER = get_logger(__name__)  # messages for the user: the main process's, unless a call says otherwise


class TrainingError(RealciaoError, RuntimeError):
    """Training cannot go on (e.g. losses stayed non-finite); the message says why and what is saved."""


def step_seed(seed: int, *parts: int) -> int:
    digest = hashlib.sha256(json.dumps([seed, *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def weights_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# options that decide the model or the data plan: a resumed run must have the same ones
PLAN_KEYS = (
    "seed",
    "generator.name",
    "generator.options",
    "generator.pretrained",
    "data.hr_folders",
    "data.builtin_samples",
    "data.meta_info",
    "data.lmdb",
    "data.paired_lr_folder",
    "data.paired_hr_folder",
    "data.paired_probability",
    "data.paired_scale",
    "data.lr_patch",
    "data.scale_min",
    "data.scale_max",
    "data.per_axis_scale",
    "data.batch_size",
    "data.hflip",
    "data.rotate",
    "data.augment",
    "data.paired_max_shift",
    "data.recipe",
    "data.pool_size",
    "data.queries_per_patch",
    "train.stage",
    "train.grad_accumulation",
    "discriminator.channels",
    "discriminator.skip_connection",
)


def plan_options(options: dict, run: dict) -> dict:
    """The model- and data-plan-deciding values of an options dump, plus the world size and
    the recipe's content (a recipe file edited in place changes the plan too)."""
    values = {}
    for key in PLAN_KEYS:
        node = options
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[key] = node
    values["world size"] = run.get("world_size")
    values["recipe content (sha256)"] = run.get("recipe_sha256")
    values["augment file content (sha256)"] = run.get("augment_sha256")
    return values


def recipe_digest(name_or_path: str) -> str:
    from realciao.degradations.recipe import resolve_recipe_path

    return hashlib.sha256(resolve_recipe_path(name_or_path).read_bytes()).hexdigest()[:16]


def augment_digest(augment: dict | str | None) -> str | None:
    """The content of a ``data.augment`` file (an inline pipeline is in the options already)."""
    return hashlib.sha256(Path(augment).read_bytes()).hexdigest()[:16] if isinstance(augment, str) else None


def scale_mismatch(recipe: Recipe, data: DataOptions) -> str | None:
    """Why a fitted recipe does not suit the training scales (its ranges were fitted for one
    scale: blur and noise mean something else at another), or None."""
    fitted = recipe.fitted_scale
    if fitted is None or data.scale_min <= fitted <= data.scale_max:
        return None
    middle = (data.scale_min + data.scale_max) / 2
    return (
        f"data.recipe {data.recipe} was fitted for x{fitted:g} (its fitted_scale), outside the training scales "
        f"x{data.scale_min:g} to x{data.scale_max:g} (data.scale_min..scale_max); refit it with "
        f"realciao-fit-recipe --scale {middle:g}, or train at scales that include x{fitted:g}"
    )


class Counters:
    """Progress that Accelerate checkpoints with the models: iteration and bad-step streak."""

    def __init__(self):
        self.iteration = 0
        self.bad_steps = 0

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "bad_steps": self.bad_steps}

    def load_state_dict(self, state: dict) -> None:
        self.iteration, self.bad_steps = state["iteration"], state["bad_steps"]


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        auto_resume: bool = False,
        config_path: str = "",
        allow_changed_options: bool = False,
    ):
        self.config = config
        self.dir = config.experiment_dir
        self.states_dir = self.dir / "states"
        self.models_dir = self.dir / "models"
        self.accelerator = Accelerator(
            mixed_precision="no",  # autocast and scalers are handled here: one scaler per optimiser
            log_with=list(config.logging.trackers) or None,
            project_config=ProjectConfiguration(
                project_dir=str(self.dir), logging_dir=str(self.dir / "logs")
            ),
        )
        self.device = self.accelerator.device
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.lock = checkpoints.ExperimentLock(self.dir)
        self._take_lock()
        self._check_fresh_or_resume(auto_resume)  # before train.log: a refused start leaves no trace in it
        self.log = RunLog(self.dir / "train.log" if self.accelerator.is_main_process else None)
        try:
            self._start(auto_resume, config_path, allow_changed_options)
        except BaseException as error:
            self.log.close(error)
            raise

    def _start(self, auto_resume: bool, config_path: str, allow_changed_options: bool) -> None:
        config, t = self.config, self.config.train
        self.log.header(
            auto_resume,
            config.model_dump(),
            {
                "options file": config_path or "(given in code)",
                "versions": versions(),
                "device": self._device_text(),
                "world size": str(self.world),
            },
        )
        self.log.keep_warnings()
        threads = configure_threads(t.threads)
        LOGGER.info(f"threads: {threads.count} ({threads.reason})")
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults on the step's buffers, see allocator.py
        self.run_info = {
            "world_size": self.world,
            "recipe_sha256": recipe_digest(config.data.recipe),
            "augment_sha256": augment_digest(config.data.augment),
        }
        if auto_resume:
            self._check_options(allow_changed_options)
        set_seed(config.seed)

        self.recipe = load_recipe(config.data.recipe)
        mismatch = scale_mismatch(self.recipe, config.data)
        if mismatch:
            LOGGER.info(f"warning: {mismatch}")  # on stdout, as it always was
        self.sources = gather_sources(config.data)
        self.pairs = paired_sources(config.data) if config.data.paired_probability > 0 else []
        self.pair_groups = pair_groups(self.pairs, config.data.lr_patch)
        self.dataset = CropDataset(config.data, self.sources, self.pairs)

        generator = self._build_generator()
        self.precision = self._decide_precision(generator, auto_resume)
        self.run_info["precision"] = self.precision
        self.ema = ModelEMA(generator, t.ema_decay)
        optimizer_g = build_optimizer(generator.parameters(), t.optimizer)
        self.schedulers = [build_scheduler(optimizer_g, t.schedule, t.iterations)]
        self.gan = t.stage == "gan"
        self.losses = LossSet(config.losses, t.stage, self.device)
        discriminator = optimizer_d = None
        if self.gan:
            discriminator = self._build_discriminator()
            optimizer_d = build_optimizer(discriminator.parameters(), config.discriminator.optimizer)
            self.schedulers.append(build_scheduler(optimizer_d, config.discriminator.schedule, t.iterations))
        if t.compile:
            generator = torch.compile(generator)
        if self.gan:
            self.generator, self.discriminator, self.optimizer_g, self.optimizer_d = self.accelerator.prepare(
                generator, discriminator, optimizer_g, optimizer_d
            )
        else:
            self.generator, self.optimizer_g = self.accelerator.prepare(generator, optimizer_g)
            self.discriminator = self.optimizer_d = None
        self.ema.module.to(self.device)
        fp16 = self.precision == "fp16"
        self.scalers = [
            torch.amp.GradScaler(self.device.type, enabled=fp16) for _ in range(2 if self.gan else 1)
        ]
        self.pool = PairPool(config.data.pool_size)
        self.counters = Counters()
        self.parts = StepParts(
            self.accelerator,
            self.generator,
            self.optimizer_g,
            self.scalers[0],
            self.ema,
            self.losses,
            self.precision,
            t.grad_clip,
            config.data.queries_per_patch,
            self.discriminator,
            self.optimizer_d,
            self.scalers[1] if self.gan else None,
        )
        self.step = steps.gan_step if self.gan else steps.net_step
        if auto_resume:
            self._resume()
        if self.accelerator.is_main_process:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "options.json").write_text(config.model_dump_json(indent=2))
            (self.dir / "run.json").write_text(json.dumps(self.run_info, indent=2))
            init_kwargs = {}
            if "wandb" in config.logging.trackers:
                (self.dir / "logs").mkdir(parents=True, exist_ok=True)
                init_kwargs["wandb"] = {"dir": str(self.dir / "logs")}
            self.accelerator.init_trackers(
                config.name,
                config={"options_file": config_path, **flat_options(config.model_dump())},
                init_kwargs=init_kwargs,
            )

    def _device_text(self) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        if self.device.type == "cpu":
            return f"cpu ({cpu_model()}, {torch.backends.cpu.get_cpu_capability()})"
        return str(self.device)

    # ---------------------------------------------------------------------- building
    def _take_lock(self) -> None:
        """The main process locks the experiment folder before anything is written; every
        process stops together when another run holds it."""
        problem = ""
        if self.accelerator.is_main_process:
            try:
                self.lock.acquire()
                for folder in (self.dir, self.models_dir):  # temporary files of a killed run
                    remove_stale(folder)
            except checkpoints.StateError as error:
                problem = str(error)
        problem = self._agree(problem)
        if problem:
            raise TrainingError(problem)

    def _agree(self, message: str) -> str:
        """The main process's message, on every process."""
        if self.world == 1:
            return message
        from accelerate.utils import broadcast_object_list

        box = [message]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def _check_fresh_or_resume(self, auto_resume: bool) -> None:
        folders = checkpoints.checkpoint_folders(self.states_dir)
        if folders and not auto_resume:
            raise TrainingError(
                f"{self.dir} already holds checkpoints (latest {folders[-1][1].name}): pass --auto-resume to continue "
                f"that run, or choose another name (--set name=...)"
            )

    def _check_options(self, allow_changed: bool) -> None:
        """Options that change the model or the data plan must be those of the checkpointed run."""
        saved_options, saved_run = self.dir / "options.json", self.dir / "run.json"
        if not saved_options.is_file():
            return  # nothing was checkpointed yet
        try:
            before = plan_options(
                json.loads(saved_options.read_text()),
                json.loads(saved_run.read_text()) if saved_run.is_file() else {},
            )
        except (OSError, ValueError) as error:
            raise TrainingError(
                f"{saved_options}: unreadable ({error}); it records the run being resumed"
            ) from error
        now = plan_options(self.config.model_dump(), self.run_info)
        changed = [
            f"{key}: {before.get(key)!r} -> {now.get(key)!r}"
            for key in sorted(set(before) | set(now))
            if before.get(key) != now.get(key) and key in before
        ]
        if not changed:
            return
        if not allow_changed:
            raise TrainingError(
                f"--auto-resume: options that change the model or the data plan differ from the "
                f"checkpointed run ({'; '.join(changed)}); restore them, or pass "
                f"--allow-changed-options to resume anyway (the change is recorded)"
            )
        if self.accelerator.is_main_process:
            with open(self.dir / "option_changes.log", "a") as log:
                log.write(
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')} resumed with changed options: {'; '.join(changed)}\n"
                )
        LOGGER.info(
            f"resuming with changed options (recorded in {self.dir / 'option_changes.log'}): "
            f"{'; '.join(changed)}"
        )

    def _decide_precision(self, generator: torch.nn.Module, auto_resume: bool) -> str:
        """The asked precision; for auto, the one the resumed run used (resume stays exact), else
        the faster measured on a copy of the generator at this run's training shapes."""
        asked = self.config.train.mixed_precision
        saved_run = self.dir / "run.json"
        if asked == AUTO and auto_resume and saved_run.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                recorded = json.loads(saved_run.read_text()).get("precision")
                if recorded in PRECISIONS:
                    LOGGER.info(f"precision: {recorded} (auto, as the run being resumed)")
                    return recorded
        probe = training_probe(generator, self.config.data, self.device) if asked == AUTO else None
        decision = decide_precision(asked, self.device, probe)
        LOGGER.info(f"precision: {decision.describe()}")
        return decision.precision

    def _build_generator(self) -> torch.nn.Module:
        g = self.config.generator
        torch.manual_seed(self.config.seed)
        if g.pretrained:
            model = load_generator(
                g.pretrained, allow_pickle=g.allow_pickle, consent="generator.allow_pickle: true"
            )
            if g.name != model.config["name"]:
                raise TrainingError(
                    f"generator.pretrained {g.pretrained} holds a {model.config['name']}, "
                    f"but generator.name is {g.name}"
                )
        else:
            model = build_generator(g.name, **g.options)
            if g.zero_init_residual:
                last = model.upsampler.imnet_q.linears[-1]
                torch.nn.init.zeros_(last.weight)
                torch.nn.init.zeros_(last.bias)
        return model.to(self.device).train()

    def _build_discriminator(self) -> torch.nn.Module:
        d = self.config.discriminator
        model = UNetDiscriminatorSN(3, d.channels, d.skip_connection)
        if d.pretrained:
            _, state = read_state(Path(d.pretrained), d.allow_pickle, "discriminator.allow_pickle: true")
            state = {k.removeprefix("module."): v for k, v in state.items()}
            try:
                model.load_state_dict(state)
            except RuntimeError as error:
                raise TrainingError(
                    f"discriminator.pretrained {d.pretrained}: not a Real-ESRGAN U-Net "
                    f"discriminator with {d.channels} channels ({error})"
                ) from error
        return model.to(self.device).train()

    # ---------------------------------------------------------------------- resume
    def _resume(self) -> None:
        choice = checkpoints.latest_complete(self.states_dir)
        for problem in (
            choice.skipped
            if choice
            else [
                p
                for _, f in checkpoints.checkpoint_folders(self.states_dir)
                if (p := checkpoints.checkpoint_problem(f))
            ]
        ):
            LOGGER.info(f"--auto-resume: skipping a damaged checkpoint: {problem}")
        if choice is None:
            LOGGER.info(f"--auto-resume: no complete checkpoint in {self.states_dir}, starting from scratch")
            return
        path = choice.path
        load = checkpoints.load_tree
        self.accelerator.unwrap_model(self.generator).load_state_dict(load(path / "generator.safetensors"))
        self.ema.load_state_dict(load(path / "ema.safetensors"))
        self.optimizer_g.load_state_dict(load(path / "optimizer_g.safetensors"))
        if self.gan:
            self.accelerator.unwrap_model(self.discriminator).load_state_dict(
                load(path / "discriminator.safetensors")
            )
            self.optimizer_d.load_state_dict(load(path / "optimizer_d.safetensors"))
        for scheduler, state in zip(self.schedulers, load(path / "schedulers.safetensors")):
            scheduler.load_state_dict(state)
        self.counters.load_state_dict(load(path / "counters.safetensors"))
        own = path / f"rank_{self.rank}.safetensors"
        if not own.is_file():
            raise TrainingError(
                f"{own}: missing; the checkpoint was written by {len(list(path.glob('rank_*')))} "
                f"process(es), this run has {self.world}"
            )
        extras = load(own)
        self.pool.load_state_dict(extras["pool"], self.device)
        for scaler, scaler_state in zip(self.scalers, extras["scalers"]):
            scaler.load_state_dict(scaler_state)
        torch.set_rng_state(extras["rng"]["torch"])
        if torch.cuda.is_available() and extras["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(extras["rng"]["cuda"])
        LOGGER.info(f"resumed from {path} (iteration {self.counters.iteration})")

    def save_checkpoint(self) -> None:
        iteration = self.counters.iteration
        temporary = checkpoints.temporary_dir(self.states_dir, iteration)
        main = self.accelerator.is_main_process
        self.accelerator.wait_for_everyone()
        if main:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        save = checkpoints.save_tree
        if main:
            save(
                self.accelerator.unwrap_model(self.generator).state_dict(),
                temporary / "generator.safetensors",
            )
            save(self.ema.state_dict(), temporary / "ema.safetensors")
            save(self.optimizer_g.state_dict(), temporary / "optimizer_g.safetensors")
            if self.gan:
                save(
                    self.accelerator.unwrap_model(self.discriminator).state_dict(),
                    temporary / "discriminator.safetensors",
                )
                save(self.optimizer_d.state_dict(), temporary / "optimizer_d.safetensors")
            save([s.state_dict() for s in self.schedulers], temporary / "schedulers.safetensors")
            save(self.counters.state_dict(), temporary / "counters.safetensors")
        checkpoints.crash_point("inside-temporary", iteration)
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        save(
            {"pool": self.pool.state_dict(), "scalers": [s.state_dict() for s in self.scalers], "rng": rng},
            temporary / f"rank_{self.rank}.safetensors",
        )
        self.accelerator.wait_for_everyone()
        if main:
            checkpoints.write_manifest(temporary)
            name = checkpoints.checkpoint_name(iteration)
            save_generator(
                self.accelerator.unwrap_model(self.generator), self.models_dir / f"net_g_{name}.safetensors"
            )
            save_generator(self.ema.module, self.models_dir / f"net_g_ema_{name}.safetensors")
            checkpoints.crash_point("before-rename", iteration)
            checkpoints.publish(temporary, iteration)
            checkpoints.prune(self.states_dir, self.models_dir, self.config.checkpoint.keep_last)
        self.accelerator.wait_for_everyone()

    # ---------------------------------------------------------------------- data
    def _loader(self, start_micro_step: int, stop_micro_step: int):
        d = self.config.data
        multiple = DISCRIMINATOR_MULTIPLE if self.gan else 1

        def plan(step: int):
            tasks = batch_plan(
                d, self.config.seed, step, self.rank, self.world, len(self.sources), self.pair_groups
            )
            # whole-patch losses: GT sides rounded to what the discriminator takes; a real pair's GT
            # must cover its LR patch exactly, so it keeps its size and the discriminator sees a crop
            if multiple > 1 and not tasks[0].paired:
                size = tuple(max(multiple, round(s / multiple) * multiple) for s in tasks[0].gt_size)
                tasks = [type(t)(t.index, size, t.seed, t.paired) for t in tasks]
            return tasks

        loader = DataLoader(
            self.dataset,
            batch_sampler=PlannedBatches(plan, start_micro_step, stop_micro_step),
            collate_fn=collate,
            num_workers=d.num_workers,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )
        return iter(loader)

    def _make_pairs(self, batch: dict[str, torch.Tensor], micro_step: int) -> dict[str, torch.Tensor]:
        gt = batch["gt"].to(self.device, non_blocking=True)
        generator = torch.Generator(device=self.device).manual_seed(
            step_seed(self.config.seed, 3, micro_step, self.rank)
        )
        sharpens = self.recipe.gt_sharpening is not None
        if "lq" in batch:  # a real pair: of the recipe, only its GT sharpening applies
            lq = batch["lq"].to(self.device, non_blocking=True)
            target = sharpen_gt(gt, self.recipe, generator)
        else:
            lq_size = (self.config.data.lr_patch, self.config.data.lr_patch)
            result = degrade(gt, self.recipe, lq_size, generator, return_sharpened_gt=sharpens)
            lq = result.lq
            target = result.gt_sharpened if sharpens else gt
        pairs = {"gt": gt, "target": target, "lq": lq}
        return self.pool.mix(pairs, generator) if self.pool.capacity else pairs

    def micro_batches(self, batches) -> Iterator[MicroBatch]:
        """The micro-batches of the next iteration, made (degraded, pooled) as they are used."""
        accumulation = self.config.train.grad_accumulation
        for micro in range(accumulation):
            micro_step = self.counters.iteration * accumulation + micro
            random = torch.Generator(device=self.device).manual_seed(
                step_seed(self.config.seed, 4, micro_step, self.rank)
            )
            yield MicroBatch(self._make_pairs(next(batches), micro_step), random)

    def train_iteration(self, batches) -> dict[str, float]:
        result = self.step(self.parts, self.micro_batches(batches), self.config.train.grad_accumulation)
        if result.skipped:
            return self._skip_bad_step(result.skipped)
        if result.discriminator_skipped:
            LOGGER.info(
                f"iteration {self.counters.iteration + 1}: non-finite discriminator loss "
                f"({result.discriminator_skipped}), discriminator step skipped"
            )
        for scheduler in self.schedulers:
            scheduler.step()
        self.counters.bad_steps = 0
        return result.losses

    def _skip_bad_step(self, report: str) -> dict[str, float]:
        self.counters.bad_steps += 1
        limit = self.config.train.max_bad_steps
        iteration = self.counters.iteration + 1
        LOGGER.info(
            f"iteration {iteration}: non-finite loss ({report}), step skipped "
            f"({self.counters.bad_steps} in a row, stopping at {limit})"
        )
        if self.counters.bad_steps >= limit:
            latest = checkpoints.latest_complete(self.states_dir)
            saved = (
                f"the last good checkpoint is {latest.path}" if latest else "no checkpoint was written yet"
            )
            raise TrainingError(
                f"the loss was NaN or infinite for {limit} iterations in a row at iteration "
                f"{iteration} ({report}); {saved}. Lower train.optimizer.lr, set "
                f"train.grad_clip, or use bf16 instead of fp16."
            )
        return {"skipped": 1.0}

    def run(self) -> Path:
        """Train to ``train.iterations``; returns the release weights' path. train.log gets every
        message meanwhile, and the error that stopped the run, if one did."""
        try:
            release = self._run()
        except BaseException as error:
            self.log.close(error)
            raise
        self.log.line(f"done: release weights (EMA) at {release}")
        self.log.close()
        return release

    def close(self) -> None:
        """For a trainer stepped by hand instead of ``run``: close train.log and release the
        experiment folder (``run`` does both at its end)."""
        self.log.close()
        self.lock.release()

    def _run(self) -> Path:
        t = self.config.train
        start = self.counters.iteration
        batches = self._loader(start * t.grad_accumulation, t.iterations * t.grad_accumulation)
        progress = self.log.progress(
            total=t.iterations,
            initial=start,
            desc=f"{self.config.name} [{t.stage}]",
            disable=not self.accelerator.is_local_main_process,
        )
        self.generator.train()
        with progress as bar:
            while self.counters.iteration < t.iterations:
                logs = self.train_iteration(batches)
                self.counters.iteration += 1  # a skipped batch is consumed too: the data stream stays aligned
                iteration = self.counters.iteration
                bar.update(1)
                if "skipped" in logs:
                    continue
                if iteration % t.log_every == 0 or iteration == t.iterations:
                    logs["lr"] = self.schedulers[0].get_last_lr()[0]
                    bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
                    self.accelerator.log({f"train/{k}": v for k, v in logs.items()}, step=iteration)
                if iteration % self.config.checkpoint.every == 0 or iteration == t.iterations:
                    self.save_checkpoint()
                if iteration % self.config.validation.every == 0 or iteration == t.iterations:
                    self.run_validation(iteration)
        release = self.dir / "net_g_ema.safetensors"
        if self.accelerator.is_main_process:
            # written beside, then renamed: a kill leaves a hidden .tmp file (removed at the next start)
            pending = release.with_name(f"{temporary_name(release)}release{TEMPORARY_SUFFIX}")
            save_generator(self.ema.module, pending)
            checkpoints.crash_point("release", self.counters.iteration)
            os.replace(pending, release)
        # every rank shows its own: equal fingerprints show the processes stayed in step
        fingerprint = weights_fingerprint(self.accelerator.unwrap_model(self.generator))
        LOGGER.info(f"rank {self.rank}: generator weights fingerprint {fingerprint}", main_process_only=False)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        self.lock.release()
        return release

    def run_validation(self, iteration: int) -> None:
        v = self.config.validation
        if self.accelerator.is_main_process and (v.hr_folder or v.builtin_sample or v.real_lr_folder):
            start = time.perf_counter()
            result = validate(self.ema.module, v, self.device)
            out_dir = self.dir / "validation"
            out_dir.mkdir(parents=True, exist_ok=True)
            for name, image in result.images.items():
                _save_png(image, out_dir / f"{checkpoints.checkpoint_name(iteration)}_{name}.png")
            log_images(
                self.accelerator.trackers, {f"val/{k}": v for k, v in result.images.items()}, iteration
            )
            self.accelerator.log(result.metrics, step=iteration)
            summary = ", ".join(f"{k.split('/')[-1]} {val:.3f}" for k, val in result.metrics.items())
            LOGGER.info(f"validation at {iteration} ({time.perf_counter() - start:.0f} s): {summary}")
        self.accelerator.wait_for_everyone()


def log_images(trackers, images: dict[str, torch.Tensor], step: int) -> None:
    """Validation images, (3, H, W) in [0, 1], to every tracker in the form it takes:
    TensorBoard a (1, 3, H, W) batch, Weights & Biases a list of H x W x 3 uint8 arrays."""
    if not images:
        return
    for tracker in trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({k: v.clamp(0, 1)[None] for k, v in images.items()}, step=step)
        elif tracker.name == "wandb":
            tracker.log_images({k: [_to_uint8(v)] for k, v in images.items()}, step=step)


def _to_uint8(image: torch.Tensor):
    import numpy as np

    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray(_to_uint8(image)).save(path)


def main_process_exit(accelerator_world: int) -> None:
    """Multi-process CPU runs can abort at interpreter exit; leave cleanly instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    if accelerator_world > 1:
        os._exit(0)


__all__ = ["Trainer", "TrainingError", "main_process_exit"]
