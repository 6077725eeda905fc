"""The exact code that ``policysearch export`` prints for torchvision and timm.

Everything about an op comes from its ``OpSpec`` (``policysearch.augment.ops``): the magnitude
rule (``formula``), the torchvision call (``torchvision``), timm's op and magnitude
(``timm``, ``timm_level``). The draws are those of ``load_transform`` and the Keras layer.
"""

from __future__ import annotations

from fractions import Fraction

from policysearch.augment.ops import MAX_LEVEL, OPS
from policysearch.policy.definition import Policy


def level_value(expression: str, m: float) -> float:
    """Evaluate an ``OpSpec`` expression (this package's own table text) at level ``m``."""
    return float(eval(expression, {"__builtins__": {}}, {"m": m}))


def _used_ops(policy: Policy) -> list[str]:
    return [name for name in OPS if name in policy.ops]


# ----------------------------------------------------------------------------------------------
# torchvision


def _torchvision_draw(policy: Policy) -> str:
    if policy.type == "randaugment":
        jitter = ""
        if policy.magnitude_std:
            jitter = (f"            m = min(max(m + {policy.magnitude_std!r} * "
                      "float(torch.randn(())), 0.0), 30.0)\n")
        own = ""
        m = f"{float(policy.magnitude)!r}"
        if policy.op_magnitudes:
            own = ("    # magnitude per op (the others at the policy's magnitude)\n"
                   f"    magnitudes = {({op: float(v) for op, v in policy.op_magnitudes})!r}\n")
            m = f"self.magnitudes.get(name, {m})"
        return (f"    ops = {list(policy.ops)!r}\n" + own + "\n"
                "    def draw(self):\n"
                f"        for _ in range({policy.num_ops}):\n"
                "            name = self.ops[int(torch.randint(len(self.ops), ()))]\n"
                f"            m = {m}\n" + jitter +
                "            yield name, m\n")
    if policy.type == "trivialaugment":
        return (f"    ops = {list(policy.ops)!r}\n\n"
                "    def draw(self):\n"
                "        name = self.ops[int(torch.randint(len(self.ops), ()))]\n"
                "        yield name, float(torch.rand(())) * 30.0\n")
    subs = "".join(
        "        [" + ", ".join(f"({op!r}, {float(p)!r}, {float(m)!r})" for op, p, m in sub)
        + "],\n" for sub in policy.sub_policies)
    return ("    sub_policies = [\n" + subs + "    ]\n\n"
            "    def draw(self):\n"
            "        sub = self.sub_policies[int(torch.randint(len(self.sub_policies), ()))]\n"
            "        for name, p, m in sub:\n"
            "            if float(torch.rand(())) < p:\n"
            "                yield name, m\n")


_CUTOUT = '''

def cutout(img, v, fill):
    """A square of side round(v * min(h, w)) filled at a uniformly random centre."""
    w, h = img.size
    side = round(v * min(h, w))
    cx, cy = int(float(torch.rand(())) * w), int(float(torch.rand(())) * h)
    x0, y0 = cx - side // 2, cy - side // 2
    left, top = max(x0, 0), max(y0, 0)
    right, bottom = min(x0 + side, w), min(y0 + side, h)
    if right <= left or bottom <= top:
        return img
    return F.erase(img, top, left, bottom - top, right - left, torch.tensor(float(fill)))
'''


def torchvision_code(policy: Policy) -> str:
    """A complete module: imports, the op table, and ``augment`` (PIL or tensor in and out)."""
    ops = _used_ops(policy)
    values = "".join(f"    {name!r}: lambda m, h, w: {OPS[name].formula},\n" for name in ops
                     if OPS[name].kind != "identity")
    calls = "".join(f"    if name == {name!r}:\n        return {OPS[name].torchvision}\n"
                    for name in ops if OPS[name].kind != "identity")
    signed = sorted(name for name in ops if OPS[name].signed)
    return (
        f'"""policysearch policy {policy.label} for torchvision: {policy!r}.\n\n'
        "Exact on PIL images: each op is policysearch's PIL call at its magnitude rule.\n"
        '"""\n'
        "import math\n\n"
        "import torch\n"
        "from torchvision.transforms import InterpolationMode\n"
        "from torchvision.transforms.v2 import functional as F\n\n"
        "NEAREST = InterpolationMode.NEAREST\n"
        f"FILL = {policy.fill}\n"
        "SIGNED = " + ("{" + ", ".join(repr(n) for n in signed) + "}" if signed else "set()")
        + "\n"
        "# Each op's argument at signed level m (0..30) on an h x w image.\n"
        "VALUE = {\n" + values + "}\n"
        + (_CUTOUT if "Cutout" in ops else "") + "\n\n"
        "def apply_op(img, name, m, fill=FILL):\n"
        '    """Op `name` at signed level `m` on a PIL image."""\n'
        "    if name not in VALUE:\n"
        "        return img  # Identity\n"
        "    w, h = img.size\n"
        "    v = VALUE[name](m, h, w)\n" + calls +
        "    raise KeyError(name)\n\n\n"
        "class PolicyAugment:\n"
        f'    """{policy.label}: one random draw per call."""\n\n'
        + _torchvision_draw(policy) + "\n"
        "    def __call__(self, img):\n"
        "        tensor = isinstance(img, torch.Tensor)\n"
        "        if tensor:\n"
        "            img = F.to_pil_image(img)\n"
        "        for name, m in self.draw():\n"
        "            if name in SIGNED and float(torch.rand(())) < 0.5:\n"
        "                m = -m\n"
        "            img = apply_op(img, name, m)\n"
        "        return F.pil_to_tensor(img) if tensor else img\n\n\n"
        "augment = PolicyAugment()\n"
    )


# ----------------------------------------------------------------------------------------------
# timm


def timm_op(name: str, prob: float, m: float, std: float = 0.0) -> str:
    """One ``AugmentOp`` at our level ``m``, jittered as our ``magnitude_std`` when ``std``.

    timm clips a jittered magnitude to [0, magnitude_max]: the top is the level of M = 0 or
    M = 30, and the ops that decrease in L (Posterize, Solarize) give at L < level(30) what
    they give at level(30), as ours clip M at 30.
    """
    spec = OPS[name]
    level = level_value(spec.timm_level, m)
    at0, at30 = level_value(spec.timm_level, 0.0), level_value(spec.timm_level, MAX_LEVEL)
    extra = ""
    if at0 != at30:
        top = max(at0, at30)
        if std:
            extra += f", magnitude_std={std * abs(at30 - at0) / MAX_LEVEL!r}"
        if std or top > 10:
            extra += f", magnitude_max={top!r}"
    return f"op({spec.timm!r}, {float(prob)!r}, {level!r}{extra})"


def _posterize_split() -> list[tuple[float, Fraction]]:
    """Posterize under M uniform in [0, 30): (timm level, probability) per number of bits."""
    edges = [Fraction(0), Fraction(15, 4), Fraction(45, 4), Fraction(75, 4), Fraction(105, 4),
             Fraction(30)]
    return [(level_value(OPS["Posterize"].timm_level, float((a + b) / 2)), (b - a) / 30)
            for a, b in zip(edges, edges[1:])]


def _timm_uniform(policy: Policy) -> str:
    share = f"1 / {len(policy.ops)}"
    lines = ["ops, weights = [], []\n"]
    for name in policy.ops:
        spec = OPS[name]
        if name == "Posterize":
            split = _posterize_split()
            levels = ", ".join(repr(level) for level, _ in split)
            weights = ", ".join(f"{float(w)!r}" for _, w in split)
            lines.append(
                "# Posterize at M uniform in [0, 30): 8, 7, 6, 5, 4 bits with these weights\n"
                f"ops += [op('PosterizeOriginal', 1.0, level) for level in ({levels})]\n"
                f"weights += [{share} * w for w in ({weights})]\n")
        elif name == "Solarize":
            lines.append(
                "# Solarize at M uniform in [0, 30): thresholds 1..255, equally likely\n"
                "ops += [op('Solarize', 1.0, (t + 0.5) / 25.6) for t in range(1, 256)]\n"
                f"weights += [{share} / 255] * 255\n")
        elif spec.neutral is None or spec.kind == "identity":
            lines.append(f"ops.append({timm_op(name, 1.0, 0.0)})\nweights.append({share})\n")
        else:  # linear through 0: L = M / 3, uniform in [0, 10)
            level = level_value(spec.timm_level, MAX_LEVEL)
            lines.append(f"ops.append(op({spec.timm!r}, 1.0, {level!r}, "
                         "magnitude_std=float('inf')))\n"
                         f"weights.append({share})\n")
    return "".join(lines) + "augment = RandAugment(ops, num_layers=1, choice_weights=weights)\n"


def timm_code(policy: Policy) -> str:
    """A complete module: imports, ``op`` (an ``AugmentOp`` with our fill and resampling) and
    ``augment`` (PIL in and out)."""
    head = (
        f'"""policysearch policy {policy.label} for timm: {policy!r}.\n\n'
        "Exact on PIL images: each AugmentOp calls the same PIL op at a magnitude chosen per op.\n"
        '"""\n'
        "from PIL import Image\n"
        "from timm.data.auto_augment import AugmentOp, AutoAugment, RandAugment\n\n"
        f"HPARAMS = {{'img_mean': ({policy.fill}, {policy.fill}, {policy.fill}), "
        "'interpolation': Image.NEAREST, 'translate_pct': 150 / 331}\n\n\n"
        "def op(name, prob, magnitude, **hparams):\n"
        "    return AugmentOp(name, prob=prob, magnitude=magnitude, "
        "hparams={**HPARAMS, **hparams})\n\n\n")
    if policy.type == "randaugment":
        ops = "".join(f"    {timm_op(name, 1.0, policy.magnitude_of(name), policy.magnitude_std)},"
                      f"  # {name}\n" for name in policy.ops)
        return head + f"augment = RandAugment([\n{ops}], num_layers={policy.num_ops})\n"
    if policy.type == "trivialaugment":
        return head + _timm_uniform(policy)
    subs = "".join("    [" + ", ".join(timm_op(op, p, m) for op, p, m in sub) + "],\n"
                   for sub in policy.sub_policies)
    return head + f"augment = AutoAugment([\n{subs}])\n"
