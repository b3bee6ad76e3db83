r"""The figures of the variance measure, computed from R replicate gradients g_1..g_R of one parameter group.

With ḡ the replicate mean, c_r = g_r - ḡ, and g* a baseline gradient (when there is one):

    trace_var        = Σ_p Var(g_p) = Σ_r ||c_r||² / (R-1)     trace of the covariance of one estimate
    mean_sq_norm     = (1/R) Σ_r ||g_r||²                      E||g||² = ||E g||² + trace_var
    snr              = mean over coordinates p of |ḡ_p| / s_p  (Rainforth et al. 2018, arXiv:1802.04537)
    snr_rms          = √(mean_p [(R-3)/(R-1) ḡ_p²/s_p² - 1/R])  the per-coordinate SNR, noise-corrected
    snr_norm         = √((||ḡ||² - trace_var/R) / trace_var)   ||E g|| over the noise's norm √tr Cov
    dsnr             = mean_r |g_r·u_{-r}| / √(mean_r ||g_r - (g_r·u_{-r}) u_{-r}||²)   directional SNR
    bias_norm        = √(||ḡ - g*||² - trace_var/R - V*)        ||E g - g*||, V* the baseline's own variance
    mean_error_norm  = ||ḡ - g*||,     cosine = (1/R) Σ_r cos(g_r, g*)

``snr`` is Rainforth et al.'s plain estimator: it skips coordinates whose gradient never varies (s_p = 0, e.g.
dead ReLU units), and for a coordinate with zero mean it is not 0 but about √(2/(πR)), reported as
``snr_floor``. The two norm figures subtract the noise that the replicate mean still carries (squared
estimates unbiased, floored at 0), so an unbiased estimator shows ``bias_norm`` near 0 while its raw
``mean_error_norm`` sits near ``bias_floor`` = √(trace_var/R + V*).

``snr`` is biased upward wherever |E g_p| is not large against the noise of ḡ_p, s_p/√R, and so flattens a
falling SNR near its floor (measured: K = 10, IWAE encoder, 0.0337 at R = 2000 against 0.0263 at R = 20000).
``snr_rms`` removes that noise coordinate by coordinate: for normal replicates E[ḡ_p²] = μ_p² + σ_p²/R and
E[1/s_p²] = (R-1)/((R-3) σ_p²) with ḡ_p and s_p independent, so (R-3)/(R-1) ḡ_p²/s_p² - 1/R is unbiased for
ρ_p² = μ_p²/σ_p²; the average over coordinates is unbiased for mean_p ρ_p², and its root (floored at 0) is the
root-mean-square per-coordinate SNR. It follows the same power laws in K as ``snr`` wherever every coordinate
does (the laws are per coordinate), without the floor: a gradient of mean zero gives ``snr_rms`` near 0.

``dsnr`` is Rainforth et al.'s directional SNR (2018, eq. 12): with u = E g / ||E g||, the mean length of the
gradient's component along u over the root mean square of the rest, E|gᵀu| / √E||g - (gᵀu) u||². The
direction of replicate r is estimated without it, u_{-r} = m_{-r}/||m_{-r}|| from the mean of the other R-1
replicates, so that its own noise does not lean its projection; a gradient of mean zero still shows about
√(2/π)/√P (the projection on a random direction), not 0.

Intervals: a percentile bootstrap over replicates (the replicates are i.i.d., so resampling them is the
textbook bootstrap), all figures from the same resamples. It stays cheap for large P because each resampled
figure is a function of the R x R Gram matrix of the centred replicates and of R-vectors, never of a resampled
copy of G (``dsnr``'s projections too are inner products with means of replicates). The per-coordinate
``snr`` and ``snr_rms`` are the exception: resampling them costs resamples x P operations (minutes for a
650k-parameter VAE), so their interval is a delete-a-group jackknife over `JACKKNIFE_GROUPS` groups of
replicates (Student-t with G-1 degrees of freedom, floored at 0), which needs only per-group sums. Sums run on
the centred replicates, so no figure loses precision to cancellation when the mean dominates the noise.

Cost: every sum is over coordinates, so the replicate matrix is reduced a tile of columns at a time (a few MB
on a CPU, which stay in cache while a dozen reductions read them; whole blocks on a GPU) and read from memory
once; the Gram matrix, R² P multiply-adds, is most of the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vaebench import rng
from vaebench.measures.schema import VARIANCE_FIGURES
from vaebench.measures.variance.layout import GradientSample
from vaebench.stats import jackknife_interval, percentile_interval

FIGURES = VARIANCE_FIGURES
"""The figures that carry a ``_low``/``_high`` interval."""

JACKKNIFE_GROUPS = 10  # groups of replicates left out in turn for the per-coordinate SNR's interval
CPU_TILE_BYTES = 1 << 22  # work arrays of one step of the summary on a CPU: a few MB, in cache


def finite_rows(sample: GradientSample) -> Tensor:
    """[R] bool: replicates whose gradient is finite in every coordinate.

    One matrix-vector product per block: a NaN or Inf anywhere in a row makes its sum non-finite.
    """
    keep = torch.ones(sample.replicates, dtype=torch.bool, device=sample.blocks[0].device)
    for i, block in enumerate(sample.blocks):
        if i in sample.factors:  # δ_rᵀ a is finite when δ_r and a (the layer's input) are
            shared, block = sample.factors[i][0], sample.factors[i][1].flatten(1)
            keep &= torch.isfinite(shared).all()
        keep &= torch.isfinite(block @ block.new_ones(block.shape[1]))
    return keep


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n] bootstrap counts: how often each replicate is drawn in each resample (rows sum to n).

    Each resample draws n indices uniformly with replacement and counts them (one ``bincount`` for all
    resamples: three times faster than ``Generator.multinomial`` at n = 100).
    """
    gen = rng.numpy_generator(seed, "variance.bootstrap")
    draws = gen.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


@dataclass
class Partial:
    """Sums over some coordinates that the figures need (c_r: centred replicate r, m: the replicate mean).

    Every field is a sum over coordinates, so the partial of a group is the sum of its blocks' partials.
    """

    gram: Tensor  # [n, n] c_r · c_s
    along_mean: Tensor  # [n] c_r · m
    along_ref: Tensor  # [n] c_r · g*
    mean_sq: float = 0.0  # ||m||²
    ref_sq: float = 0.0  # ||g*||²
    mean_dot_ref: float = 0.0  # m · g*
    snr_sum: float = 0.0  # Σ_p |m_p| / s_p over varying coordinates
    snr_count: int = 0
    loo_sum: Tensor | None = None  # [G] the same with replicate group j left out
    loo_count: Tensor | None = None
    snr_sq_sum: float = 0.0  # Σ_p m_p² / s_p² over varying coordinates
    loo_sq_sum: Tensor | None = None  # [G] the same with replicate group j left out

    def __add__(self, other: Partial) -> Partial:
        return Partial(
            self.gram + other.gram,
            self.along_mean + other.along_mean,
            self.along_ref + other.along_ref,
            self.mean_sq + other.mean_sq,
            self.ref_sq + other.ref_sq,
            self.mean_dot_ref + other.mean_dot_ref,
            self.snr_sum + other.snr_sum,
            self.snr_count + other.snr_count,
            self.loo_sum + other.loo_sum,
            self.loo_count + other.loo_count,
            self.snr_sq_sum + other.snr_sq_sum,
            self.loo_sq_sum + other.loo_sq_sum,
        )


def summary_tile(replicates: int, like: Tensor) -> int:
    """Columns per step of :func:`block_partial` for blocks like ``like``: on a CPU, as many as keep the two
    work arrays [n, tile] within `CPU_TILE_BYTES` (in cache); on a GPU, whole blocks (one launch per step)."""
    if like.device.type != "cpu":
        return like.shape[1]
    return max(256, CPU_TILE_BYTES // (2 * replicates * like.element_size()))


class _Coordinates:
    """Per-coordinate sums of a block, a tile of columns at a time: the means, and the per-coordinate SNR of all
    replicates and of each leave-one-group-out (rows of ``tops``/``about``: group j left out, then all)."""

    def __init__(self, like: Tensor, n: int, numel: int, tile: int):
        # The G jackknife groups are `size` consecutive replicates each (a remainder of fewer than G
        # replicates is never left out); kept = the replicates left when one group is out.
        self.n, self.groups = n, min(n, JACKKNIFE_GROUPS)
        self.size = n // self.groups
        self.kept = n - self.size
        self.means = like.new_empty(numel)  # m, kept for the float64 scalars at the end
        self.tops, self.about = (like.new_empty(self.groups + 1, tile) for _ in range(2))
        # Σ |m| / s, the count and Σ m² / s² per row
        self.sums = like.new_zeros(3, self.groups + 1, dtype=torch.float64)

    def add(self, work: Tensor, lo: int) -> None:
        """Columns lo.. of the block: ``work`` [2, n, width] holds the centred replicates c and c², and
        ``means[lo : lo + width]`` their mean."""
        groups, size, width = self.groups, self.size, work.shape[-1]
        grouped = groups * size
        mean = self.means[lo : lo + width]
        # Per group Σ c_r and Σ c_r² (sums over consecutive rows: no matrix product needed).
        s1, s2 = work[:, :grouped].view(2, groups, size, width).sum(2)  # [G, width] each
        top, about = self.tops[:, :width], self.about[:, :width]
        torch.sum(s2, 0, out=about[groups])
        if grouped < self.n:
            about[groups] += work[1, grouped:].sum(0)
        top[groups] = mean
        # Leave group j out: centred replicates sum to zero, so the kept ones sum to -s1_j.
        torch.add(mean, s1, alpha=-1.0 / self.kept, out=top[:groups])
        torch.sub(about[groups], s2, out=about[:groups]).addcmul_(s1, s1, value=-1.0 / self.kept)
        self.sums += _snr(top, about)

    def partial(self, gram: Tensor, along: Tensor, baseline: Tensor | None) -> Partial:
        """The :class:`Partial`, given the Gram matrix [n, n] and ``along`` [2, n] (m · c_r, g* · c_r)."""
        f64 = torch.float64
        # s = √(Σ (c - c̄)² / (replicates - 1)): the ratios were summed without that factor.
        scale = torch.tensor([math.sqrt(self.kept - 1)] * self.groups + [math.sqrt(self.n - 1)], dtype=f64)
        sums = self.sums.cpu()
        loo_sum, snr_sum = (sums[0] * scale).split([self.groups, 1])
        loo_count, snr_count = sums[1].split([self.groups, 1])
        loo_sq_sum, snr_sq_sum = (sums[2] * scale.square()).split([self.groups, 1])
        mean = self.means.to(f64)
        ref = None if baseline is None else baseline.to(f64)
        zero = mean.new_zeros(())
        scalars = torch.stack(
            [mean @ mean, zero if ref is None else ref @ ref, zero if ref is None else mean @ ref]
        )
        mean_sq, ref_sq, mean_dot_ref = scalars.tolist()
        gram, along = gram.cpu(), along.cpu()  # small; the figures are computed on the CPU
        return Partial(
            gram=gram,
            along_mean=along[0],
            along_ref=along[1],
            mean_sq=mean_sq,
            ref_sq=ref_sq,
            mean_dot_ref=mean_dot_ref,
            snr_sum=float(snr_sum),
            snr_count=int(snr_count),
            loo_sum=loo_sum,
            loo_count=loo_count,
            snr_sq_sum=float(snr_sq_sum),
            loo_sq_sum=loo_sq_sum,
        )


def block_partial(
    block: Tensor, baseline: Tensor | None = None, scratch: Tensor | None = None, tile: int | None = None
) -> Partial:
    """The :class:`Partial` of one block [n, numel] of finite replicates (and its baseline [numel]).

    The block is reduced ``tile`` columns at a time: every sum is over coordinates, so tiles add up, and a
    tile small enough to stay in cache is read from memory once however many reductions use it. Large
    reductions run in the block's dtype (sums of n <= a few thousand centred terms lose nothing that
    matters); their results are accumulated in float64.

    Args:
        block: replicate gradients of one parameter, left unchanged.
        baseline: the baseline gradient on the same coordinates, or None.
        scratch: a buffer of at least ``2 * n * tile`` entries to work in (saves allocations).
        tile: columns per step (default: all of them).
    """
    n, numel = block.shape
    tile = numel if tile is None else max(1, min(tile, numel))
    if scratch is None:
        scratch = block.new_empty(2 * n * tile)
    coords = _Coordinates(block, n, numel, tile)
    gram = block.new_zeros(n, n, dtype=torch.float64)
    along = block.new_zeros(2, n, dtype=torch.float64)  # m · c_r, g* · c_r
    for lo in range(0, numel, tile):
        cols = block[:, lo : lo + tile]
        width = cols.shape[1]
        work = scratch[: 2 * n * width].view(2, n, width)
        centred, squares = work[0], work[1]
        mean = torch.sum(cols, 0, out=coords.means[lo : lo + width]).div_(n)
        torch.sub(cols, mean, out=centred)
        torch.mul(centred, centred, out=squares)  # (mul is faster than square, a pow, on CPU)
        if baseline is None:
            along[0] += mean @ centred.T
        else:  # a product with two columns is slow in BLAS, two rows are not
            along += torch.stack([mean, baseline[lo : lo + width].to(block.dtype)]) @ centred.T
        gram += centred @ centred.T
        coords.add(work, lo)
    return coords.partial(gram, along, baseline)


def factored_partial(
    shared: Tensor,
    deltas: Tensor,
    baseline: Tensor | None = None,
    scratch: Tensor | None = None,
    tile: int | None = None,
) -> Partial:
    """The :class:`Partial` of a weight block given as factors: replicate r's gradient is δ_rᵀ a [out, in].

    For a layer whose input a [B, in] is the same in every replicate (the encoder's first, reading x), the
    engine keeps δ [n, B, out] instead of the n x out x in block (see :class:`GradientSample`). Centring δ
    centres the gradients exactly (they are linear in δ), and the Gram matrix needs no gradient at all: with
    K = a aᵀ [B, B], c_r · c_s = Σ_bb' K_bb' (δ̃_r δ̃_sᵀ)_bb' = vec(δ̃_r) · vec(K δ̃_s), which costs
    n B (B + n) out multiply-adds instead of n² out in (the "ghost norm" identity of per-example gradient
    clipping, Goodfellow 2015, arXiv:1510.01799; Li et al. 2022, arXiv:2110.05679). The per-coordinate sums
    (means, SNR, its jackknife) are exact too: the gradients are formed a tile of output units at a time, in
    cache, and reduced at once, never written to memory.

    Args:
        shared: a [B, in], the layer's input.
        deltas: δ [n, B, out] of the finite replicates (left unchanged).
        baseline: the baseline gradient of the weight, flattened [out * in], or None.
        scratch: a buffer of at least ``2 * n * tile`` entries to work in.
        tile: columns per step (rounded down to whole output units, at least one).
    """
    n, batch, out_f = deltas.shape
    in_f = shared.shape[1]
    numel = out_f * in_f
    units = max(1, min(out_f, (numel if tile is None else tile) // in_f))
    if scratch is None or scratch.numel() < 2 * n * units * in_f:
        scratch = deltas.new_empty(2 * n * units * in_f)
    coords = _Coordinates(deltas, n, numel, units * in_f)
    centred = deltas - deltas.mean(0)  # δ̃ [n, B, out]
    torch.mm(deltas.mean(0).T, shared, out=coords.means.view(out_f, in_f))  # m = δ̄ᵀ a
    flat = centred.view(n, -1)
    gram = (flat @ torch.matmul(shared @ shared.T, centred).view(n, -1).T).double()
    vectors = [coords.means.view(out_f, in_f)]
    if baseline is not None:
        vectors.append(baseline.to(deltas.dtype).view(out_f, in_f))
    # c_r · v = Σ_{b,o} δ̃_r[b, o] (a vᵀ)[b, o] for v = m and g*.
    along = deltas.new_zeros(2, n, dtype=torch.float64)
    along[: len(vectors)] = (torch.stack([(shared @ v.T).reshape(-1) for v in vectors]) @ flat.T).double()
    # Unit-major δ̃ [out, n, B], so that a tile of u units is one product [u·n, B] @ [B, in] (tall enough for
    # BLAS, unlike n products of u rows), then reordered replicate-major into the work array.
    by_unit = centred.permute(2, 0, 1).contiguous()
    products = deltas.new_empty(units * n, in_f)
    for unit in range(0, out_f, units):
        u = min(units, out_f - unit)
        work = scratch[: 2 * n * u * in_f].view(2, n, u * in_f)
        torch.mm(by_unit[unit : unit + u].view(u * n, batch), shared, out=products[: u * n])
        work[0].view(n, u, in_f).copy_(products[: u * n].view(u, n, in_f).transpose(0, 1))
        torch.mul(work[0], work[0], out=work[1])
        coords.add(work, unit * in_f)
    return coords.partial(gram, along, baseline)


def _snr(tops: Tensor, squares_about: Tensor) -> Tensor:
    """[3, rows]: Σ_p |top_p| / √(squares_about_p) over coordinates that vary (squares_about > 0), their count,
    and Σ_p top_p² / squares_about_p, for each row of [rows, numel]; overwrites both (temporaries of the
    caller). This is the summary's largest elementwise work, so it makes as few passes as it can; sums over
    one tile run in its dtype (a float64 sum converts the whole tile first), tiles add up in float64."""
    still = squares_about <= 0
    ratio = squares_about.clamp_min_(torch.finfo(squares_about.dtype).tiny).rsqrt_().mul_(tops.abs_())
    ratio.masked_fill_(still, 0.0)
    return torch.stack(
        [
            ratio.sum(-1).to(torch.float64),
            torch.count_nonzero(still.logical_not_(), -1).to(torch.float64),
            torch.linalg.vecdot(ratio, ratio).to(torch.float64),
        ]
    )


def figures(
    partial: Partial,
    n: int,
    *,
    has_baseline: bool = False,
    baseline_var: float = 0.0,
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    counts: np.ndarray | None = None,
) -> dict[str, float]:
    """The figures of a group from the sum of its blocks' partials, with intervals.

    Args:
        partial: sum of :func:`block_partial` over the group's blocks.
        n: finite replicates (>= 2).
        has_baseline: whether the partials carry a baseline (bias and cosine figures).
        baseline_var: trace of the covariance of the baseline itself (0 for an exact one).
        level: interval level.
        resamples: bootstrap resamples.
        seed: seeds the resampling.
        counts: the bootstrap counts [resamples, n] to use (default: ``resample_counts(n, resamples, seed)``;
            pass them to share one set of draws between groups).

    Returns:
        Figure name -> value, with ``<figure>_low`` and ``<figure>_high`` for each of `FIGURES`, and
        ``snr_floor``, ``snr_coordinates``, ``bias_floor``.
    """
    w = torch.from_numpy(resample_counts(n, resamples, seed) if counts is None else counts)
    gram, mean_sq = partial.gram, partial.mean_sq
    sq_c = gram.diagonal()  # ||c_r||²
    wg = w @ gram  # [resamples, n]: c_r · Σ_s w_s c_s, the largest product of the bootstrap
    wgw = (wg * w).sum(1)  # ||Σ_r w_r c_r||² per resample
    # A resample repeats replicates, which shrinks its spread by (n-1)/n on average: undo that.
    tv_draws = (w @ sq_c - wgw / n) / (n - 1) * n / (n - 1)
    trace_var = float(sq_c.sum()) / (n - 1)
    sq_norms = mean_sq + 2 * partial.along_mean + sq_c  # ||g_r||²
    mean_w_sq = mean_sq + 2 * (w @ partial.along_mean) / n + wgw / n**2  # ||resampled mean||²
    snr = partial.snr_sum / partial.snr_count if partial.snr_count else float("nan")
    snr_rms = _snr_rms(partial.snr_sq_sum, partial.snr_count, n)
    kept = n - n // min(n, JACKKNIFE_GROUPS)  # replicates left when one jackknife group is out
    loo_rms = [
        _snr_rms(float(sq), int(count), kept)
        for sq, count in zip(partial.loo_sq_sum, partial.loo_count, strict=True)
    ]
    # ||ḡ||² over-estimates ||E g||² by the noise of the mean, trace_var / n: remove it.
    signal_sq = mean_sq - trace_var / n
    out: dict[str, float] = {
        "trace_var": trace_var,
        "mean_sq_norm": float(sq_norms.mean()),
        "snr": snr,
        "snr_rms": snr_rms,
        "dsnr": float("nan"),
        "snr_norm": math.sqrt(max(signal_sq, 0.0) / trace_var) if trace_var > 0 else float("nan"),
        "snr_floor": math.sqrt(2 / (math.pi * n)),
        "snr_coordinates": partial.snr_count,
        "bias_norm": float("nan"),
        "mean_error_norm": float("nan"),
        "bias_floor": float("nan"),
        "cosine": float("nan"),
    }
    intervals = {
        "trace_var": percentile_interval(tv_draws.numpy(), level),
        "mean_sq_norm": percentile_interval(((w @ sq_norms) / n).numpy(), level),
        # A group with no noise at all (rws-dreg's encoder at K = 1, whose gradient is 0) has no SNR.
        "snr_norm": _root(
            centred_percentile(((mean_w_sq - tv_draws / n) / tv_draws).numpy(), signal_sq / trace_var, level)
        )
        if trace_var > 0
        else (float("nan"), float("nan")),
        "snr": jackknife_interval(snr, (partial.loo_sum / partial.loo_count).numpy(), level),
        "snr_rms": jackknife_interval(snr_rms, np.array(loo_rms), level),
    }
    out["dsnr"], intervals["dsnr"] = _directional(partial, n, w, wg, wgw, level)
    if has_baseline and partial.ref_sq > 0:
        err_sq = mean_sq - 2 * partial.mean_dot_ref + partial.ref_sq  # ||ḡ - g*||²
        bias_sq = err_sq - trace_var / n - baseline_var  # unbiased for ||E g - g*||²
        err_w_sq = err_sq + 2 * (w @ (partial.along_mean - partial.along_ref)) / n + wgw / n**2
        cos = (partial.mean_dot_ref + partial.along_ref) / (
            sq_norms.clamp_min(0).sqrt() * math.sqrt(partial.ref_sq)
        )
        out |= {
            "bias_norm": math.sqrt(max(bias_sq, 0.0)),
            "mean_error_norm": math.sqrt(max(err_sq, 0.0)),
            "bias_floor": math.sqrt(trace_var / n + baseline_var),
            "cosine": float(cos.mean()),
        }
        bias_draws = err_w_sq - tv_draws / n - baseline_var
        intervals["bias_norm"] = _root(centred_percentile(bias_draws.numpy(), bias_sq, level))
        intervals["cosine"] = percentile_interval(((w @ cos) / n).numpy(), level)
    for name in FIGURES:
        out[f"{name}_low"], out[f"{name}_high"] = intervals.get(name, (float("nan"), float("nan")))
    return out


def _snr_rms(sq_sum: float, count: int, n: int) -> float:
    """√(max(0, (n-3)/(n-1) (Σ ḡ²/s²)/count - 1/n)): the noise-corrected root-mean-square per-coordinate SNR
    of n replicates (NaN without a varying coordinate or with n < 4, where E[1/s²] is infinite)."""
    if not count or n < 4:
        return float("nan")
    return math.sqrt(max((n - 3) / (n - 1) * sq_sum / count - 1 / n, 0.0))


def _directional(
    partial: Partial, n: int, w: Tensor, wg: Tensor, wgw: Tensor, level: float
) -> tuple[float, tuple[float, float]]:
    """Rainforth et al.'s DSNR with leave-one-out directions, and its bootstrap interval.

    With M = ||m||², a_r = c_r·m and G the Gram matrix of the centred replicates, everything is an R-vector:
    g_r·m = M + a_r and ||g_r||² = M + 2a_r + G_rr, and leaving g_r out of the mean, m_{-r} = (n m - g_r)/(n-1),
    gives g_r·m_{-r} and ||m_{-r}||² from them. A resample of counts w has mean m_w = m + Σ_s w_s c_s / n, with
    g_r·m_w = M + a_r + w·a/n + (w G)_r/n and ||m_w||² as for ``snr_norm``; all w_r copies of r are left out
    of the direction r is projected on (one copy left out would leave the others leaning it).
    """
    mean_sq, along, gram = partial.mean_sq, partial.along_mean, partial.gram
    sq_norms = mean_sq + 2 * along + gram.diagonal()  # ||g_r||²
    dot = mean_sq + along  # g_r · m
    estimate = float(_dsnr(dot, torch.tensor(mean_sq, dtype=torch.float64), sq_norms, n, None))
    dot_w = dot + (w @ along)[:, None] / n + wg / n  # [resamples, n]: g_r · m_w
    mean_w_sq = mean_sq + 2 * (w @ along) / n + wgw / n**2  # ||m_w||²
    draws = _dsnr(dot_w, mean_w_sq[:, None], sq_norms, n, w)
    return estimate, percentile_interval(draws.numpy(), level)


def _dsnr(dot: Tensor, mean_sq: Tensor, sq_norms: Tensor, n: int, counts: Tensor | None) -> Tensor:
    """DSNR from g_r·m and ||m||² of a (resampled) mean and the replicates' ||g_r||², each replicate's copies
    left out of the direction it is projected on; ``counts`` [resamples, n] weight the replicates (None: each
    once). A resample made of one replicate only has no direction left: NaN, dropped by the interval."""
    c = 1.0 if counts is None else counts
    rest = n - c
    loo_dot = (n * dot - c * sq_norms) / rest  # g_r · m_{-r}
    loo_sq = (n * n * mean_sq - 2 * n * c * dot + c * c * sq_norms) / rest**2  # ||m_{-r}||²
    along = loo_dot / loo_sq.clamp_min(0).sqrt()  # g_r · u_{-r}
    perpendicular = (sq_norms - along.square()).clamp_min(0)
    if counts is None:
        return along.abs().mean() / perpendicular.mean().sqrt()
    used = counts > 0  # replicates absent from a resample weigh nothing (their NaN must not leak)
    along = torch.where(used, along.abs(), 0.0)
    perpendicular = torch.where(used, perpendicular, 0.0)
    return ((counts * along).sum(-1) / n) / ((counts * perpendicular).sum(-1) / n).sqrt()


def centred_percentile(draws: np.ndarray, estimate: float, level: float) -> tuple[float, float]:
    """Percentile interval of draws shifted so that their mean sits on ``estimate``.

    For the noise-corrected squared norms: a resampled mean carries the noise of resampling on top of the
    noise the correction removes, so the raw draws sit too high by about trace_var / n.
    """
    low, high = percentile_interval(draws, level)
    finite = np.asarray(draws, dtype=float)[np.isfinite(draws)]
    if finite.size == 0 or not math.isfinite(estimate):
        return float("nan"), float("nan")
    shift = float(finite.mean()) - estimate
    return low - shift, high - shift


def _root(interval: tuple[float, float]) -> tuple[float, float]:
    return tuple(math.sqrt(max(v, 0.0)) if math.isfinite(v) else float("nan") for v in interval)
