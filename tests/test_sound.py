"""Sound noise (Voráček & Hein, ICLR 2023): the float-noise attack, the rounded-Gaussian sampler, its radius.

Expected values come from: mpmath ``ncdf`` at 200 bits (thresholds), ``scipy.special.ndtr`` (pmfs of the
rounded Gaussian), exact convolution of those pmfs (the smoothed probabilities of the attack's honest part),
and ``scipy.stats.chisquare`` for the goodness of fit of the drawn offsets (fixed seeds, so deterministic).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import special, stats

from backends import TorchSampler
from backends.base import ArraySampler, numpy_noisy_batches
from backends.noise import SoundNoise, default_clip, make_sound_noise, parse_grid
from radius import radii
from radius.certificate import certify

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------------------------------------ the attack
D = 256          # input dimension
BITS = 27        # the exploit looks for set bits below 2^-27
SIGMA = 1.0      # a power of two: sigma * eps is eps, exactly
T = 1 / 8        # the adversarial point is x0 + T * 1, at L2 distance T sqrt(D) = 2
THRESH = 1 / 16  # the honest part: class 1 iff mean(z) > 1/16 (boundary at L2 distance 1 from x0)


class Exploit(torch.nn.Module):
    """A base classifier that reads the floating-point grid of its noisy input.

    Class 0 when some coordinate has a set bit below ``2^-27`` (``z * 2^27`` not an integer), else the honest
    linear rule: class 1 iff ``mean(z) > 1/16``. At ``x0 = 0`` float noise gives ``z_i = eps_i`` exactly, and the
    ~5 % of coordinates with ``|eps_i| < 1/16`` carry bits far below ``2^-27``: class 0 almost surely. At
    ``x1 = x0 + 1/8``, ``fl(1/8 + eps_i)`` is a multiple of ``2^-27`` for every float32 ``eps_i`` (a sum of
    ``|.| >= 1/16`` has ulp ``>= 2^-27``; a smaller one is an exact sum of multiples of ``2^-27``), so only the
    honest rule speaks. On clean inputs (no noise) the classifier is the honest rule.
    """

    def forward(self, z):
        z = z.reshape(z.shape[0], -1)
        reads_float_noise = (torch.frac(z * 2.0 ** BITS) != 0).any(1)
        b = (~reads_float_noise) & (z.mean(1) > THRESH)
        return torch.stack([(~b).to(z.dtype), b.to(z.dtype)], 1)


def _rounded_gaussian_pmf(sn: SoundNoise, k: int) -> np.ndarray:
    """Exact pmf of the clipped grid index clip(k + round(eps / h), 0, G) (scipy ndtr, float64)."""
    G, h = sn.levels, float(sn.grid)
    j = np.arange(G)
    cdf = special.ndtr((j - k + 0.5) * h / sn.sigma)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def _prob_mean_above(sn: SoundNoise, k: int, d: int, thresh_index_sum: int) -> float:
    """P(sum of d iid grid indices > thresh_index_sum) by exact convolution of the pmf (float64)."""
    pmf = _rounded_gaussian_pmf(sn, k)
    dist = np.array([1.0])
    base, e = pmf, d
    while e:  # exponentiation by squaring of the convolution power
        if e & 1:
            dist = np.convolve(dist, base)
        base = np.convolve(base, base)
        e >>= 1
    return float(dist[thresh_index_sum + 1:].sum())


def test_float_noise_attack_breaks_the_certificate_and_sound_noise_does_not():
    torch.set_num_threads(1)
    x0 = np.zeros(D, dtype=np.float32)
    x1 = np.full(D, T, dtype=np.float32)
    dist = float(np.linalg.norm(x1.astype(np.float64) - x0))
    assert dist == 2.0
    # clean inputs: the classifier is the honest rule, and x1 is on the other side of its boundary
    model = Exploit()
    with torch.no_grad():
        assert model(torch.from_numpy(np.stack([x0, x1]))).argmax(1).tolist() == [0, 1]

    def cert(sampler, x):
        return certify(sampler.counts(x, 100, 1), sampler.counts(x, 10_000, 2), sigma=SIGMA, alpha=0.001,
                       radius="Rmono", reduction="cohen")

    # float noise: x0 certified as class 0 with a radius > 2, yet x1 at distance 2 is certified as class 1
    fl = TorchSampler(model, sigma=SIGMA, device="cpu", num_classes=2, noise="float")
    c0, c1 = cert(fl, x0), cert(fl, x1)
    assert c0.prediction == 0 and c0.radius > dist, c0          # measured: radius 3.20
    assert c1.prediction == 1 and c1.radius > 0, c1             # measured: radius 0.96
    # -> the float certificate of x0 is wrong: a point inside it gets another certified class

    # sound noise on the 1/16 grid: the model never sees float noise, only the honest rule speaks
    sd = TorchSampler(model, sigma=SIGMA, device="cpu", num_classes=2, noise="sound",
                      grid="1/16")
    s0, s1 = cert(sd, x0), cert(sd, x1)
    assert s0.prediction == 0 and 0 < s0.radius < dist, s0      # measured: radius 0.93
    assert s1.prediction == 1, s1
    # the sound certificates are right: the exact smoothed probabilities (convolution of the rounded Gaussian)
    sn = sd.sound
    k0, k1 = int(sn.indices(x0)[0]), int(sn.indices(x1)[0])
    # mean(z) > 1/16  <=>  sum of grid indices > D * (1/16 - lo) * 16
    cut = int(D * (Fraction(1, 16) - sn.lo) / sn.grid)
    p0_class1 = _prob_mean_above(sn, k0, D, cut)
    p1_class1 = _prob_mean_above(sn, k1, D, cut)
    assert p0_class1 < 0.5 < p1_class1                          # ~0.16 and ~0.84
    # the certified radius at x0 is at most the radius implied by the true probability, which excludes x1
    true_r0 = SIGMA * special.ndtri(1 - p0_class1)
    assert s0.radius <= true_r0 < dist
    assert s0.p_a_lower <= 1 - p0_class1


# ------------------------------------------------------------------------------------------- the sampler
def test_thresholds_match_the_normal_cdf():
    sn = SoundNoise(0.25, grid="1/16", clip=(-2, 3))
    d = np.arange(-sn.levels, sn.levels)
    ref = special.ndtr((d + 0.5) / 16 / 0.25)  # scipy: a few ulps from the exact value
    got = sn.thresholds.astype(np.float64) / 2.0 ** 62
    assert np.all(np.abs(got - ref) <= 4e-16 + 2 * np.finfo(float).eps * ref)
    assert np.all(np.diff(sn.thresholds) >= 0) and sn.thresholds[0] >= 0 and sn.thresholds[-1] <= 2 ** 62
    # one threshold checked against mpmath by hand: floor(2^62 Phi(0.5 / 16 / 0.25)) at 200 bits
    import mpmath

    with mpmath.workprec(200):
        want = int(mpmath.floor(mpmath.ncdf(mpmath.mpf(1) / 8) * mpmath.mpf(2) ** 62))
    assert int(sn.thresholds[sn.levels]) == want


def test_guide_table_equals_binary_search():
    sn = SoundNoise(0.5, grid=1 / 255, clip=(-3, 4))
    rng = np.random.default_rng(0)
    u = rng.integers(0, 2 ** 62, size=200_000, dtype=np.int64)
    # and every threshold, its neighbours, and the bucket edges around it
    t = sn.thresholds
    edges = (t >> (62 - 16)) << (62 - 16)
    u = np.concatenate([u, t, t - 1, t + 1, edges, edges - 1, [0, 2 ** 62 - 1]])
    u = u[(u >= 0) & (u < 2 ** 62)]
    assert np.array_equal(sn.count_below(u), np.searchsorted(t, u, side="right"))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_drawn_offsets_follow_the_rounded_gaussian(backend):
    sn = SoundNoise(0.5, grid="1/4", clip=(-1, 2))  # G = 12 levels: clipping at both ends matters
    x = np.array([-1.0, 0.0, 0.75, 2.0])
    k = sn.indices(x)
    assert k.tolist() == [0, 4, 7, 12]
    n = 200_000
    if backend == "numpy":
        v = sn.sample_numpy(k, n, np.random.default_rng(3))
    else:
        thr, vals = sn.torch_tables("cpu", torch.float64)
        g = torch.Generator().manual_seed(3)
        z = sn.sample_torch(torch.as_tensor(k), n, g, thr, vals).numpy()
        v = np.rint((z - float(sn.lo)) / float(sn.grid)).astype(np.int64)
        assert np.array_equal(sn.values[v], z)  # the model sees grid values only
    for col, kk in enumerate(k):
        pmf = _rounded_gaussian_pmf(sn, int(kk))
        obs = np.bincount(v[:, col], minlength=sn.levels + 1)
        keep = pmf * n >= 5
        exp = np.append(pmf[keep] * n, pmf[~keep].sum() * n)
        ob = np.append(obs[keep], obs[~keep].sum())
        if exp[-1] == 0:
            exp, ob = exp[:-1], ob[:-1]
        p = stats.chisquare(ob, exp * ob.sum() / exp.sum()).pvalue
        assert p > 1e-4, (col, p)


def test_reproducible_and_seeded():
    torch.set_num_threads(1)
    from backends import TorchSampler
    from backends.models import load_digits_split, load_torch_model

    x = load_digits_split("test")[0][0]
    s = TorchSampler(load_torch_model(0.25), sigma=0.25, device="cpu", noise="sound", grid="1/16",
                     batch_size=300)
    a, b, c = s.counts(x, 700, 5), s.counts(x, 700, 5), s.counts(x, 700, 6)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and a.sum() == 700
    # the NumPy stream does not depend on the batch size for float noise; for sound noise each batch draws
    # (b, *x.shape) integers sequentially from one PCG64 stream, so it does not either
    batches = [bt for _, bt in numpy_noisy_batches(x, 0.25, 700, 5, 300, np.float32, s.sound)]
    whole = [bt for _, bt in numpy_noisy_batches(x, 0.25, 700, 5, 700, np.float32, s.sound)]
    assert np.array_equal(np.concatenate(batches), whole[0])
    assert np.all(np.isin(whole[0], s.sound.values.astype(np.float32)))


def test_onnx_and_array_sampler_sound():
    from backends import OnnxSampler
    from backends.models import default_model_path, load_digits_split

    x, y = load_digits_split("test")
    o = OnnxSampler(default_model_path(0.25), sigma=0.25, providers=["CPUExecutionProvider"], noise="sound",
                    grid=1 / 16)
    c = o.counts(x[0], 500, 0)
    assert c.sum() == 500 and int(c.argmax()) == int(y[0])
    assert np.array_equal(c, o.counts(x[0], 500, 0))
    seen = []
    a = ArraySampler(lambda z: (seen.append(z.copy()), np.stack([z.sum(1), -z.sum(1)], 1))[1], 2, sigma=0.5,
                     noise="sound", grid="1/8", clip=(-4, 4), batch_size=64)
    a.counts(np.array([0.5, -0.25]), 200, 1)
    allz = np.concatenate(seen)
    assert allz.shape == (200, 2) and np.all(allz * 8 == np.rint(allz * 8)) and allz.min() >= -4 and allz.max() <= 4


def test_bad_input_is_refused_with_a_clear_message():
    from backends import OnnxSampler, TorchSampler
    from backends.models import default_model_path, load_digits_split, load_torch_model

    x = load_digits_split("test")[0][0].copy()
    x[0, 2, 3] = 0.3
    ts = TorchSampler(load_torch_model(0.25), sigma=0.25, device="cpu", noise="sound", grid="1/16")
    with pytest.raises(ValueError, match=r"x\[\(0, 2, 3\)\] = 0\.3\d* is not on the grid .*h = 1/16.*nearest grid "
                                         r"value 0\.3125"):
        ts.counts(x, 10, 0)
    os_ = OnnxSampler(default_model_path(0.25), sigma=0.25, providers=["CPUExecutionProvider"], noise="sound",
                      grid="1/16", clip=(0, 1))
    with pytest.raises(ValueError, match=r"is not on the grid"):
        os_.counts(x, 10, 0)
    x[0, 2, 3] = 1.5
    with pytest.raises(ValueError, match=r"x\[\(0, 2, 3\)\] = 1\.5 lies outside the clip range \[0, 1\]"):
        os_.counts(x, 10, 0)
    with pytest.raises(ValueError, match=r"grid=0\.0625 only applies to noise='sound'"):
        TorchSampler(load_torch_model(0.25), sigma=0.25, device="cpu", grid=1 / 16)
    with pytest.raises(ValueError, match=r"clip=\(0, 1\) only applies to noise='sound'"):
        OnnxSampler(default_model_path(0.25), sigma=0.25, clip=(0, 1))
    with pytest.raises(ValueError, match=r"noise='sound' needs grid="):
        OnnxSampler(default_model_path(0.25), sigma=0.25, noise="sound")
    with pytest.raises(ValueError, match=r"noise must be one of"):
        OnnxSampler(default_model_path(0.25), sigma=0.25, noise="numpy")
    with pytest.raises(ValueError, match=r"clip lo = 0\.1 is not a multiple of the grid step 1/16"):
        SoundNoise(0.25, grid="1/16", clip=(0.1, 1))
    with pytest.raises(ValueError, match=r"grid must be"):
        parse_grid(0.1234567891234)
    with pytest.raises(ValueError, match=r"grid must be > 0"):
        parse_grid("-1/16")


def test_grid_helpers():
    assert parse_grid(1 / 255) == Fraction(1, 255) and parse_grid("1/16") == Fraction(1, 16)
    assert default_clip(0.25) == (-2, 3) and default_clip(0.12) == (-1, 2)
    assert make_sound_noise("float", 0.5) is None
    sn = SoundNoise(0.5, grid=1 / 255, clip=(0, 1))
    # float32 images k/255 are accepted and identified with the grid point k
    k = np.arange(256)
    assert np.array_equal(sn.indices((k / 255).astype(np.float32)), k)
    assert np.array_equal(sn.indices(k.astype(np.float32) / np.float32(255)), k)
    # the digits pixels (multiples of 1/16) are also on the finer 1/256 grid
    from backends.models import load_digits_split

    xd = load_digits_split("test")[0][:5]
    fine = SoundNoise(0.25, grid="1/256")
    assert np.array_equal(fine.indices(xd) - 2 * 256, (xd * 256).astype(np.int64))
    with pytest.raises(ValueError, match="not on the grid"):
        SoundNoise(0.25, grid="1/10").indices(xd)
    # TV bound: dim * G * 2^(1 - bits), rounded up
    assert sn.tv_bound(3072) >= 3072 * 255 * 2.0 ** -61 and sn.tv_bound(3072) < 3.5e-13
    assert sn.describe() == {"noise": "sound", "grid": "1/255", "clip": ["0", "1"], "bits": 62, "sigma": 0.5}


# ------------------------------------------------------------------------------------------------ radius
def test_r_sound():
    assert radii.r_sound(0.8, 0.1, 1.0) == radii.r2(0.8, 0.1, 1.0)
    assert radii.r_sound_mono(0.9, 0.5) == radii.r_mono(0.9, 0.5)
    tv = 1e-3
    # the shifted bounds move one more ulp outward (a rounded subtraction never helps the user)
    down, up = (lambda v: float(np.nextafter(v, -np.inf))), (lambda v: float(np.nextafter(v, np.inf)))
    assert radii.r_sound(0.8, 0.1, 1.0, tv) == radii.r2(down(0.8 - tv), up(0.1 + tv), 1.0)
    assert radii.r_sound_mono(0.9, 0.5, tv) == radii.r_mono(down(0.9 - tv), 0.5)
    assert radii.r_sound(0.5 + 1e-4, 0.5 - 1e-4, 1.0, 1e-3) == 0.0
    a, b = radii.sound_probability_bounds(np.array([0.0005, 0.9]), np.array([0.9995, 0.1]), tv)
    assert a.tolist() == [0.0, down(0.9 - tv)] and b.tolist() == [1.0, up(0.1 + tv)]
    # a tv below half an ulp still moves the bound (0.98 - 5e-17 rounds to 0.98)
    assert radii.sound_probability_bounds(0.98, 0.02, 5e-17) == (down(0.98), up(0.02 + 5e-17))
    with pytest.raises(ValueError, match="tv must be"):
        radii.r_sound(0.8, 0.1, 1.0, tv=-1)
    assert radii.sound_linear_margin_lower(0.5, 1e-3) == down(0.5 - 2e-3)
    with pytest.raises(ValueError, match="tv must be"):
        radii.sound_linear_margin_lower(0.5, float("nan"))
    # monotone in tv
    r = [radii.r_sound(0.99, 0.005, 0.5, t) for t in (0, 1e-6, 1e-4, 1e-2)]
    assert all(r[i] > r[i + 1] for i in range(3))
    assert math.isfinite(r[0])
