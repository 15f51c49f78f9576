"""Regenerate gan-derivation.pdf, the two-page derivation attached to section 2.2.

    python experiments/attachments/make_gan_derivation.py

Drawn with matplotlib's mathtext, so it needs no LaTeX; the output has no creation date, so the
same source gives the same bytes.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

PAGES = [
    ("How a GAN learns: the objective and its optimum", [
        ("text", "A generator G maps noise z ~ p_z to images; a discriminator D gives the probability"),
        ("text", "that an image came from the data rather than from G. They play a two-player game:"),
        ("math", r"$\min_G\ \max_D\ V(D,G) = \mathbb{E}_{x\sim p_{data}}[\log D(x)]"
                 r" + \mathbb{E}_{z\sim p_z}[\log(1 - D(G(z)))]$"),
        ("head", "1. The best discriminator for a fixed generator"),
        ("text", "Write p_g for the distribution of G(z). Then V is an integral over images:"),
        ("math", r"$V(D,G) = \int_x \left( p_{data}(x)\,\log D(x) + p_g(x)\,\log(1 - D(x)) \right)\,dx$"),
        ("text", "For fixed a, b > 0 the function y -> a log y + b log(1 - y) peaks at y = a / (a + b),"),
        ("text", "so the integrand is largest, image by image, at"),
        ("math", r"$D^{*}_{G}(x) = \frac{p_{data}(x)}{p_{data}(x) + p_g(x)}$"),
        ("head", "2. What the generator then minimises"),
        ("text", "Put D* back into V and let m be the mixture of the two distributions:"),
        ("math", r"$m = \frac{1}{2}(p_{data} + p_g), \qquad C(G) = \max_D V(D,G)"
                 r" = -\log 4 + 2\,\mathrm{JSD}(p_{data}\,\|\,p_g)$"),
        ("text", "The Jensen-Shannon divergence is never negative and is zero only when the two"),
        ("text", "distributions are equal, so the game's optimum is p_g = p_data, with value -log 4"),
        ("text", "and D = 1/2 everywhere: the discriminator can do no better than a coin."),
    ]),
    ("What is trained in practice", [
        ("head", "3. Losses per step"),
        ("text", "Early on D rejects G's images easily and log(1 - D(G(z))) is flat, so its gradient"),
        ("text", "vanishes. The usual fix keeps the same fixed point but asks G to maximise log D(G(z)):"),
        ("math", r"$L_D = -\frac{1}{2n}\sum_{i}\left[\log D(x_i) + \log(1 - D(G(z_i)))\right]$"),
        ("math", r"$L_G = -\frac{1}{n}\sum_{i}\log D(G(z_i))$"),
        ("text", "Each step lowers L_D with one batch of real and one of generated images, then L_G"),
        ("text", "with fresh noise, the discriminator's weights held fixed. Real labels may be smoothed"),
        ("text", "to 1 - s (one-sided), which keeps D from growing over-confident."),
        ("head", "4. Why the optimum is not always reached: mode collapse"),
        ("text", "L_G rewards images that fool the current D, not images that cover every digit. If"),
        ("text", "G finds one kind of image D accepts, sending many z to it lowers L_G; D then learns"),
        ("text", "to reject it and G moves on to another. Nothing in a single batch's loss asks for"),
        ("text", "variety, so the generated digits can stay concentrated on a few classes:"),
        ("math", r"$H = -\sum_{k=0}^{9} q_k \log_2 q_k \leq \log_2 10 \approx 3.32\ \mathrm{bits}$"),
        ("text", "where q_k is the share of generated images a classifier assigns to digit k. The report"),
        ("text", "measures H at every recorded epoch: log2 10 for an even spread, 0 when all are alike."),
    ]),
]


def main() -> None:
    out = Path(__file__).with_name("gan-derivation.pdf")
    with PdfPages(out, metadata={"CreationDate": None, "Title": "How a GAN learns"}) as pdf:
        for number, (title, lines) in enumerate(PAGES, start=1):
            fig = plt.figure(figsize=(8.27, 11.69))  # A4
            y = 0.92
            fig.text(0.1, y, title, fontsize=16, weight="bold")
            y -= 0.06
            for kind, text in lines:
                if kind == "head":
                    y -= 0.015
                    fig.text(0.1, y, text, fontsize=12, weight="bold")
                    y -= 0.035
                elif kind == "math":
                    fig.text(0.5, y - 0.01, text, fontsize=12.5, ha="center")
                    y -= 0.06
                else:
                    fig.text(0.1, y, text, fontsize=10.5)
                    y -= 0.025
            fig.text(0.5, 0.05, f"Derivation attached to section 2.2 - page {number} of {len(PAGES)}",
                     fontsize=8, ha="center", color="#555555")
            pdf.savefig(fig)
            plt.close(fig)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
