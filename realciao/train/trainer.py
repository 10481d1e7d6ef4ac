"""The training loop: plain PyTorch with Accelerate (DDP, multi-node, CPU gloo).

``Trainer`` reads top to bottom: build (data, models, optimisers, loss set), ``prepare``,
resume, then a loop of steps (``realciao.train.steps``) with checkpoints and validation,
and the release weights. Data flows one way: planned crops -> degradation on the training
device -> optional pool -> generator -> losses. All randomness is drawn from generators
seeded by (seed, micro-step, rank), so a resumed run draws exactly what the uninterrupted
run would have drawn; model, optimiser, scheduler, EMA, scaler and pool states come from
the checkpoint (``realciao.train.state``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed

from realciao.allocator import keep_freed_memory
from realciao.archs import build_generator
from realciao.archs.discriminator import UNetDiscriminatorSN
from realciao.autoprecision import decide_precision
from realciao.checkpoint import load_generator, read_state
from realciao.degradations import degrade, load_recipe, sharpen_gt
from realciao.degradations.specs import Recipe
from realciao.devices import AUTO, PRECISIONS, configure_threads, cpu_model
from realciao.train import state, steps
from realciao.train.config import DataOptions, DiscriminatorOptions, GeneratorOptions, TrainConfig
from realciao.train.data import CropDataset, gather_sources, pair_groups, paired_sources, planned_loader
from realciao.train.ema import ModelEMA
from realciao.train.losses import DISCRIMINATOR_MULTIPLE, LossSet
from realciao.train.optim import build_optimizer, build_scheduler, trainable_groups
from realciao.train.pool import PairPool
from realciao.train.runlog import RunLog, flat_options, get_logger, versions
from realciao.train.state import TrainingError
from realciao.train.steps import MicroBatch, StepParts, training_probe
from realciao.train.validation import log_images, save_png, validate

LOGGER = get_logger(__name__)  # messages for the user: the main process's, unless a call says otherwise


class Trainer:
    """One training run into ``config.experiment_dir``: ``run()`` trains it to the end;
    ``train_iteration`` (with ``_loader``) steps it by hand."""

    def __init__(
        self,
        config: TrainConfig,
        auto_resume: bool = False,
        config_path: str = "",
        allow_changed_options: bool = False,
    ):
        self.config = config
        self.dir = config.experiment_dir
        self.states_dir, self.models_dir = self.dir / "states", self.dir / "models"
        self.accelerator = Accelerator(
            mixed_precision="no",  # autocast and scalers are handled here: one scaler per optimiser
            log_with=list(config.logging.trackers) or None,
            project_config=ProjectConfiguration(
                project_dir=str(self.dir), logging_dir=str(self.dir / "logs")
            ),
        )
        self.device = self.accelerator.device
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.lock = state.lock_experiment(self.accelerator, self.dir, stale_in=(self.dir, self.models_dir))
        state.check_fresh_start(
            self.dir, auto_resume
        )  # before train.log: a refused start leaves no trace in it
        self.log = RunLog(self.dir / "train.log" if self.accelerator.is_main_process else None)
        try:
            self._build(auto_resume, config_path, allow_changed_options)
        except BaseException as error:
            self.log.close(error)
            raise

    def _build(self, auto_resume: bool, config_path: str, allow_changed_options: bool) -> None:
        config, t = self.config, self.config.train
        facts = {
            "options file": config_path or "(given in code)",
            "versions": versions(),
            "device": device_text(self.device),
            "world size": str(self.world),
        }
        self.log.header(auto_resume, config.model_dump(), facts)
        self.log.keep_warnings()
        threads = configure_threads(t.threads)
        LOGGER.info(f"threads: {threads.count} ({threads.reason})")
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults on the step's buffers, see allocator.py
        self.run_info = state.run_facts(config, self.world)
        if auto_resume:
            state.check_plan(self.accelerator, self.dir, config, self.run_info, allow_changed_options)
        set_seed(config.seed)

        # the data: images and real pairs, cropped by plan; the recipe degrades them on the device
        self.recipe = load_recipe(config.data.recipe)
        mismatch = scale_mismatch(self.recipe, config.data)
        if mismatch:
            LOGGER.info(f"warning: {mismatch}")  # on stdout, as it always was
        self.sources = gather_sources(config.data)
        self.pairs = paired_sources(config.data) if config.data.paired_probability > 0 else []
        self.pair_groups = pair_groups(self.pairs, config.data.lr_patch)
        self.dataset = CropDataset(config.data, self.sources, self.pairs)

        # the models, their optimisers and schedules, the loss set; the discriminator in the GAN stage
        generator = initial_generator(config.generator, config.seed, self.device)
        recorded = state.recorded_precision(self.dir) if auto_resume else None
        self.precision = training_precision(t.mixed_precision, generator, config.data, self.device, recorded)
        self.run_info["precision"] = self.precision
        self.ema = ModelEMA(generator, t.ema_decay)
        optimizer_g = build_optimizer(trainable_groups(generator, t.freeze, t.encoder_lr), t.optimizer)
        self.schedulers = [build_scheduler(optimizer_g, t.schedule, t.iterations)]
        self.losses = LossSet(
            config.losses, t.stage, self.device
        )  # before the discriminator: VGG19 draws too
        discriminator = optimizer_d = None
        if t.stage == "gan":
            discriminator = initial_discriminator(config.discriminator, self.device)
            optimizer_d = build_optimizer(discriminator.parameters(), config.discriminator.optimizer)
            self.schedulers.append(build_scheduler(optimizer_d, config.discriminator.schedule, t.iterations))
        if t.compile:
            generator = torch.compile(generator)
        self.generator, self.discriminator, self.optimizer_g, self.optimizer_d = self.accelerator.prepare(
            generator, discriminator, optimizer_g, optimizer_d
        )  # (None stays None)
        self.ema.module.to(self.device)
        scaler_g, scaler_d = (
            torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
            if optimizer is not None
            else None
            for optimizer in (self.optimizer_g, self.optimizer_d)
        )
        self.scalers = [scaler for scaler in (scaler_g, scaler_d) if scaler is not None]
        self.step = steps.gan_step if t.stage == "gan" else steps.net_step
        self.parts = StepParts(
            self.accelerator,
            self.generator,
            self.optimizer_g,
            scaler_g,
            self.ema,
            self.losses,
            self.precision,
            t.grad_clip,
            config.data.queries_per_patch,
            self.discriminator,
            self.optimizer_d,
            scaler_d,
        )

        # what a checkpoint holds; resumed from the newest complete one
        self.pool = PairPool(config.data.pool_size)
        self.counters = state.Counters()
        unwrap = self.accelerator.unwrap_model
        self.checkpointed = state.RunState(
            unwrap(self.generator),
            self.ema,
            self.optimizer_g,
            self.schedulers,
            self.counters,
            self.pool,
            self.scalers,
            unwrap(self.discriminator) if self.discriminator is not None else None,
            self.optimizer_d,
        )
        if auto_resume:
            state.resume(self.accelerator, self.checkpointed, self.states_dir, self.device)
        if self.accelerator.is_main_process:
            state.write_run_record(self.dir, config, self.run_info)
            self._start_trackers(config_path)

    def _start_trackers(self, config_path: str) -> None:
        config, init_kwargs = self.config, {}
        if "wandb" in config.logging.trackers:
            (self.dir / "logs").mkdir(parents=True, exist_ok=True)
            init_kwargs["wandb"] = {"dir": str(self.dir / "logs")}
        hyperparameters = {"options_file": config_path, **flat_options(config.model_dump())}
        self.accelerator.init_trackers(config.name, config=hyperparameters, init_kwargs=init_kwargs)

    # ---------------------------------------------------------------------- the data of a step
    def _loader(self, start_micro_step: int, stop_micro_step: int):
        """The planned batches of micro-steps [start, stop) on this process; whole-patch (GAN)
        losses take GT sides rounded to what the discriminator takes."""
        multiple = DISCRIMINATOR_MULTIPLE if self.discriminator is not None else 1
        return planned_loader(
            self.dataset,
            self.config.data,
            self.config.seed,
            self.rank,
            self.world,
            self.pair_groups,
            start_micro_step,
            stop_micro_step,
            multiple,
            pin_memory=self.device.type == "cuda",
        )

    def _make_pairs(self, batch: dict[str, torch.Tensor], micro_step: int) -> dict[str, torch.Tensor]:
        """GT crops -> (GT, target, LQ) on the device: degraded by the recipe (a real pair only
        gets its GT sharpened), then mixed with the pool."""
        gt = batch["gt"].to(self.device, non_blocking=True)
        random = torch.Generator(device=self.device).manual_seed(
            step_seed(self.config.seed, 3, micro_step, self.rank)
        )
        sharpens = self.recipe.gt_sharpening is not None
        if "lq" in batch:
            lq = batch["lq"].to(self.device, non_blocking=True)
            target = sharpen_gt(gt, self.recipe, random)
        else:
            lq_size = (self.config.data.lr_patch, self.config.data.lr_patch)
            result = degrade(gt, self.recipe, lq_size, random, return_sharpened_gt=sharpens)
            lq, target = result.lq, result.gt_sharpened if sharpens else gt
        pairs = {"gt": gt, "target": target, "lq": lq}
        return self.pool.mix(pairs, random) if self.pool.capacity else pairs

    def micro_batches(self, batches) -> Iterator[MicroBatch]:
        """The micro-batches of the next iteration, made as the step uses them."""
        accumulation = self.config.train.grad_accumulation
        for micro in range(accumulation):
            micro_step = self.counters.iteration * accumulation + micro
            random = torch.Generator(device=self.device).manual_seed(
                step_seed(self.config.seed, 4, micro_step, self.rank)
            )
            yield MicroBatch(self._make_pairs(next(batches), micro_step), random)

    # ---------------------------------------------------------------------- the loop
    def train_iteration(self, batches) -> dict[str, float]:
        """One optimiser step; its loss terms, or ``{"skipped": 1.0}`` when the loss was not finite."""
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
        limit, iteration = self.config.train.max_bad_steps, self.counters.iteration + 1
        LOGGER.info(
            f"iteration {iteration}: non-finite loss ({report}), step skipped "
            f"({self.counters.bad_steps} in a row, stopping at {limit})"
        )
        if self.counters.bad_steps >= limit:
            latest = state.latest_complete(self.states_dir)
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
            state.write_release(self.ema.module, release)
        # every rank shows its own: equal fingerprints show the processes stayed in step
        fingerprint = weights_fingerprint(self.accelerator.unwrap_model(self.generator))
        LOGGER.info(f"rank {self.rank}: generator weights fingerprint {fingerprint}", main_process_only=False)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        self.lock.release()
        return release

    def save_checkpoint(self) -> None:
        state.save_checkpoint(
            self.accelerator,
            self.checkpointed,
            self.states_dir,
            self.models_dir,
            self.config.checkpoint.keep_last,
        )

    def run_validation(self, iteration: int) -> None:
        v = self.config.validation
        if self.accelerator.is_main_process and (v.hr_folder or v.builtin_sample or v.real_lr_folder):
            start = time.perf_counter()
            result = validate(self.ema.module, v, self.device)
            out_dir = self.dir / "validation"
            out_dir.mkdir(parents=True, exist_ok=True)
            for name, image in result.images.items():
                save_png(image, out_dir / f"{state.checkpoint_name(iteration)}_{name}.png")
            log_images(
                self.accelerator.trackers, {f"val/{k}": v for k, v in result.images.items()}, iteration
            )
            self.accelerator.log(result.metrics, step=iteration)
            summary = ", ".join(f"{k.split('/')[-1]} {val:.3f}" for k, val in result.metrics.items())
            LOGGER.info(f"validation at {iteration} ({time.perf_counter() - start:.0f} s): {summary}")
        self.accelerator.wait_for_everyone()


# ------------------------------------------------------------------------------ building
def initial_generator(options: GeneratorOptions, seed: int, device: torch.device) -> torch.nn.Module:
    """The generator a run starts from: ``pretrained`` weights, or a fresh one (seeded) that starts
    as plain bilinear upsampling when ``zero_init_residual``."""
    torch.manual_seed(seed)
    if options.pretrained:
        model = load_generator(
            options.pretrained, allow_pickle=options.allow_pickle, consent="generator.allow_pickle: true"
        )
        if options.name != model.config["name"]:
            raise TrainingError(
                f"generator.pretrained {options.pretrained} holds a {model.config['name']}, "
                f"but generator.name is {options.name}"
            )
    else:
        model = build_generator(options.name, encoder_weights=options.encoder_weights, **options.options)
        if options.zero_init_residual:
            last = model.upsampler.imnet_q.linears[-1]
            torch.nn.init.zeros_(last.weight)
            torch.nn.init.zeros_(last.bias)
    return model.to(device).train()


def initial_discriminator(options: DiscriminatorOptions, device: torch.device) -> torch.nn.Module:
    model = UNetDiscriminatorSN(3, options.channels, options.skip_connection)
    if options.pretrained:
        _, weights = read_state(
            Path(options.pretrained), options.allow_pickle, "discriminator.allow_pickle: true"
        )
        try:
            model.load_state_dict({k.removeprefix("module."): v for k, v in weights.items()})
        except RuntimeError as error:
            raise TrainingError(
                f"discriminator.pretrained {options.pretrained}: not a Real-ESRGAN U-Net "
                f"discriminator with {options.channels} channels ({error})"
            ) from error
    return model.to(device).train()


def training_precision(
    asked: str,
    generator: torch.nn.Module,
    data: DataOptions,
    device: torch.device,
    recorded: str | None = None,
) -> str:
    """The asked precision; for auto, ``recorded`` (the precision of the run being resumed: resume
    stays exact), else the faster measured on a copy of the generator at this run's shapes."""
    if asked == AUTO and recorded in PRECISIONS:
        LOGGER.info(f"precision: {recorded} (auto, as the run being resumed)")
        return recorded
    probe = training_probe(generator, data, device) if asked == AUTO else None
    decision = decide_precision(asked, device, probe)
    LOGGER.info(f"precision: {decision.describe()}")
    return decision.precision


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


def device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({cpu_model()}, {torch.backends.cpu.get_cpu_capability()})"
    return str(device)


def step_seed(seed: int, *parts: int) -> int:
    digest = hashlib.sha256(json.dumps([seed, *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def weights_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main_process_exit(accelerator_world: int) -> None:
    """Multi-process CPU runs can abort at interpreter exit; leave cleanly instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    if accelerator_world > 1:
        os._exit(0)


__all__ = ["Trainer", "TrainingError", "main_process_exit"]
