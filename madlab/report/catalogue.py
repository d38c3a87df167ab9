"""Which MAD figure a results folder reproduces, and what its report must show.

A folder is matched by its spec ``name`` (``loops/fig*.yaml``). Every folder gets the generic
panels (metrics vs generation, samples per generation); an entry here adds the figure's
own panels and the metrics the paper plots, so that a folder missing them says so in the
index instead of silently dropping a panel.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MadFigure:
    figures: str                    # "Fig. 10"
    title: str
    claim: str                      # the paper's qualitative claim
    metrics: tuple[str, ...] = ()   # metrics the paper plots
    hue: str = "bias"               # what colours the metric curves
    panels: tuple[str, ...] = ()    # extra panels: theory, tsne, samples, final_vs_total, ess
    notes: dict = field(default_factory=dict)
    guide: str = ""                 # "what you are looking at": the outcomes the panels should show


CATALOGUE: dict[str, MadFigure] = {
    "fig04_06_16_ddpm_mnist": MadFigure(
        "Figs. 4, 6, 16", "Fully-synthetic loop, class-conditional DDPM on MNIST, λ ∈ {1, 0.8, 0.66, 0.5}",
        "λ = 1: FID rises and recall falls over generations; λ < 1: precision holds or rises while recall "
        "collapses faster", ("fid", "precision", "recall"), panels=("samples", "tsne")),
    "fig04_06_16_gan_ffhq": MadFigure(
        "Figs. 4, 6, 16", "Fully-synthetic loop, GAN with latent truncation on FFHQ 128x128, λ ∈ {1, 0.7}",
        "λ = 1: FID rises, recall falls; λ = 0.7: precision holds while recall falls faster",
        ("fid", "precision", "recall"), panels=("samples", "tsne")),
    "fig08_09_fixed_real": MadFigure(
        "Figs. 8, 9", "Fixed real data (synthetic augmentation) vs fully-synthetic loop, DDPM on MNIST",
        "a fixed real set only delays the degradation; FID still rises over generations",
        ("fid", "precision", "recall"), panels=("samples",)),
    "fig10_gaussian": MadFigure(
        "Fig. 10 (left)", "Fresh-real loop, Gaussian d = 100, n_r = 100, n_s = 900, n_initial ∈ {100, 1000}",
        "the loop converges to a limit that does not depend on n_initial", ("w2", "trace_cov"),
        hue="n_initial", panels=("theory",)),
    "fig10_ddpm_mnist": MadFigure(
        "Fig. 10 (right)", "Fresh-real loop, DDPM on MNIST, n_r = n_s = 2k, n_initial varied",
        "FID converges to the same limit whatever n_initial", ("fid",), hue="n_initial", panels=("samples",)),
    "fig11_12_ess": MadFigure(
        "Figs. 11, 12", "Effective sample size n_e / n_r of the Gaussian fresh-real loop (Monte Carlo)",
        "λ = 1: n_e / n_r grows with n_s but stays below 2; λ < 1: more synthetic data lowers n_e / n_r "
        "(below 1 for large n_s)", panels=("ess",)),
    "fig13_wgan_mnist": MadFigure(
        "Fig. 13", "Fully-synthetic loop, WGAN-GP on MNIST over 100 generations, λ = 1",
        "FID increases and precision and recall decrease monotonically over generations", ("fid", "precision", "recall"),
        panels=("samples",)),
    "fig14_15_gmm": MadFigure(
        "Figs. 14, 15", "Fully-synthetic loop, GMM on the 25-mode grid",
        "modes are lost over generations (faster with λ < 1)", ("modes", "w2", "recall"), panels=("samples",)),
    "fig17_flow_rosenbrock": MadFigure(
        "Fig. 17", "Fully-synthetic loop, normalising flow on Rosenbrock, λ ∈ {1, 0.75}",
        "the tails of the banana are lost over generations; λ = 0.75 collapses faster", ("w2", "recall"),
        panels=("samples",)),
    "fig30_memory": MadFigure(
        "Fig. 30", "Fresh-real loop with synthetic data from the last K models (memory K)",
        "more memory does not prevent the loss caused by sampling bias; the limit error grows with λ < 1",
        ("w2",), hue="memory", panels=("theory",)),
    "fig31_wd_vs_n": MadFigure(
        "Fig. 31", "Limit W2 vs total training-set size n for several real fractions and λ (Gaussian fresh-real)",
        "with λ = 1 the error falls with n for every real fraction; with λ < 1 it plateaus unless the real "
        "fraction is large", ("w2",), hue="mix", panels=("final_vs_total",)),
    # ---- curation in the loop (madlab.curation): the mitigation studies since MAD
    "curation_ferbach_gaussian": MadFigure(
        "Ferbach et al. 2024", "Best-of-K curation (K = 4, β = 1) on a linear reward, Gaussian model on N(0, I_2)",
        "with curated samples only, the expected reward E_{p_t}[r] (reward_before) is non-decreasing and grows "
        "without bound; with real data mixed in (fixed-real) it rises less and the loop stays near the data",
        ("reward_before", "reward_after", "mean_shift", "w2"), hue="real", panels=("curation",)),
    "curation_ferbach_gmm25": MadFigure(
        "Ferbach et al. 2024", "Best-of-K curation (K = 4, β = 1) on closeness to one mode, GMM on the 25-mode grid",
        "curated-only retraining concentrates the mixture on the rewarded region (reward up, modes lost); "
        "real data in every training set keeps the modes", ("reward_before", "modes", "w2", "recall"),
        hue="real", panels=("curation", "samples")),
    "curation_gillman_gaussian": MadFigure(
        "Gillman et al. 2024", "Gaussian toy as the authors' code runs it: 50 real points in every training set "
        "plus 25 corrected samples a generation (truncated accumulation), correction towards fresh true draws "
        "with t = γ/(1+γ), MLE fit",
        "a larger γ keeps W2 to the true Gaussian lower over the generations (γ = 0: no correction)",
        ("w2", "trace_cov"), hue="gamma", panels=("curation",)),
    "curation_selfcorrect_assignment_gaussian": MadFigure(
        "madlab (after Gillman et al. 2024)", "Fully-synthetic Gaussian loop, each sample moved γ of the way to "
        "the real training row assigned to it (not the paper's toy)",
        "a larger γ keeps W2 lower after the same number of generations (γ = 0: the collapsing loop)",
        ("w2", "trace_cov"), hue="gamma", panels=("curation",)),
    "curation_verify_gmm25": MadFigure(
        "Feng et al. 2024; Yi et al. 2026", "Verifier filtering with an imperfect verifier, GMM on the 25-mode grid",
        "the loop converges towards what the verifier knows: fewer false accepts keep more samples on the modes",
        ("hq_fraction", "precision", "modes", "acceptance_rate"), hue="verifier", panels=("curation", "samples")),
    "curation_gillman_ddpm_mnist": MadFigure(
        "Gillman et al. 2024", "k-means self-correction (16 centres per digit) of a DDPM loop on MNIST",
        "stronger correction keeps FID lower at a high synthetic ratio", ("fid", "precision", "recall"),
        hue="gamma", panels=("samples",)),
    "curation_drayson_detector_mnist": MadFigure(
        "Drayson et al. 2025", "Detector importance resampling ∝ (1 - p_synthetic)^b, DDPM loop on MNIST",
        "resampling towards what looks real slows collapse", ("fid", "precision", "recall", "reward_after"),
        hue="b", panels=("curation", "samples")),
}


#: specs that are not figure reproductions but get a guided page (the embedded default)
GUIDES: dict[str, MadFigure] = {
    "quickstart": MadFigure(
        "Quickstart", "MAD's three loops on closed-form models (Gaussian, GMM) and neural generators, CPU scale",
        "fully-synthetic loops degrade (faster with λ < 1); a fixed real set slows the decay; fresh real data "
        "each generation keeps the model near the data",
        (), panels=("theory",),
        guide=(
            "Each run starts from a model trained on real data (generation 1) and retrains every generation on "
            "data built by its scheme. Line style is the scheme (solid: fully-synthetic, dashed: fixed-real, "
            "dotted: fresh-real) in every panel, colour is the sampling bias λ (where λ does not vary, the scheme "
            "again), and the dotted grey level in each metric panel "
            "is real data scored against the reference set (the table's 'real vs real' rows): what a perfect "
            "model would score. What MAD predicts, and what the panels should show: in the fully-synthetic "
            "loop the Gaussian's fitted variance (trace Σ, theory panel, pale line = the exact expectation) "
            "shrinks as λ^(t−1) and W2 grows; with λ = 1 it performs a random walk whose error still grows. "
            "With λ < 1 precision holds or rises while recall and the GMM's mode count fall (quality kept, "
            "diversity lost). A fixed real set (fixed-real) slows but does not stop the decay; fresh real data "
            "each generation (fresh-real) keeps every metric near its generation-1 value. The neural runs "
            "pass the generation-1 quality floors of benchmarks/check_quality.py (the summary table's generation-1 "
            "column against its real-vs-real row). The DDPM on the 25-mode grid runs six generations of each "
            "loop: in the fully-synthetic loop its samples drift off the modes (high-quality fraction and coverage "
            "fall generation after generation) while fixed-real and fresh-real hold near their generation-2 "
            "level. The MNIST GAN runs two generations: one fully-synthetic generation already trades recall "
            "(diversity) for precision, which the real data in the other two loops counteract; two generations "
            "show the direction, not the long-run outcome (loops/fig*.yaml run longer loops).")),
}


def lookup(name: str) -> MadFigure | None:
    key = name.replace("-", "_")
    return CATALOGUE.get(key) or GUIDES.get(key)
