"""Loading seqgan's model files into the modules of seqgan_torch.models, as strictly as seqgan
loads them: the architecture comes from the configuration the file carries, every tensor of the
module must be in the file with the same shape and dtype, and the file may hold nothing else."""
import json

from .models import TokenSpace, Tokenizer, Transformer
from .safetensors_io import read_safetensors

FORMAT, FORMAT_VERSION = "seqgan", 1
EMA_PREFIX = "ema."
WEIGHT_CHOICES = ("auto", "ema", "raw")

# The configuration keys that seqgan's tokenizer, quantizer and transformer sections hold. A key
# not listed here was written by a seqgan that knows more than this module: it might change the
# architecture, so the file is refused rather than loaded into the wrong model.
KNOWN_KEYS = {
    "tokenizer": {"base_channels", "channel_mult", "num_res_blocks", "mid_res_blocks", "code_dim", "codebook_size",
                  "norm_groups", "norm_eps", "maskgit_skip", "decoder_extra_res_blocks", "decoder_attn_pairs",
                  "attn_window", "attn_heads", "input_range"},
    "quantizer": {"beta", "entropy_gamma", "entropy_tau", "entropy_sign", "per_sample_entropy_gamma", "init_range",
                  "kind", "factor_dim", "kmeans_every", "kmeans_until", "kmeans_iters"},
    "transformer": {"layers", "width", "heads", "mlp", "dropout", "num_classes"},
}
# The keys the modules read, per section (the data section is read for these two alone).
NEEDED_KEYS = {
    "data": {"channels", "resolution"},
    "tokenizer": KNOWN_KEYS["tokenizer"] - {"input_range"},  # files written before it: "minus1_1"
    "quantizer": {"beta", "entropy_gamma", "entropy_tau", "entropy_sign", "per_sample_entropy_gamma", "init_range",
                  "kind", "factor_dim"},
    "transformer": {"layers", "width", "heads", "mlp", "dropout"},
}


def read_model_file(path, kinds):
    """(tensors, metadata, config dict) of a seqgan model file whose kind is one of `kinds`."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        found = f"'{meta['format']}'" if "format" in meta else "no format"
        raise ValueError(f"{path}: not a seqgan model file: expected __metadata__ format 'seqgan', found {found}; "
                         "pass a file written by `seqgan train-tokenizer` or `seqgan train-transformer`")
    version = meta.get("format_version", "")
    if not version.isdigit() or int(version) < 1:
        raise ValueError(f"{path}: format_version '{version}' is not a positive integer; the file is damaged")
    if int(version) > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version} is newer than this module reads ({FORMAT_VERSION}); "
                         "use the python/seqgan_torch of the seqgan that wrote the file")
    kind = meta.get("kind", "")
    if kind not in kinds:
        wanted = " or ".join(f"'{k}'" for k in kinds)
        hint = {"tokenizer": "load_tokenizer", "transformer-ar": "load_transformer",
                "transformer-nar": "load_transformer"}.get(kind)
        fix = f"load it with seqgan_torch.{hint}" if hint else "pass the model file (tokenizer.safetensors or " \
                                                               "transformer.safetensors) of a training run"
        raise ValueError(f"{path}: holds a '{kind}', expected {wanted}; {fix}")
    try:
        config = json.loads(meta["config"])
        if not isinstance(config, dict):
            raise json.JSONDecodeError("not a JSON object", meta["config"], 0)
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the metadata has no valid config JSON ({e}); the file is damaged") from None
    return tensors, meta, config


def config_section(config, section, path):
    """The section of seqgan's config that the modules take, checked: every key they need present,
    no key this module does not know."""
    part = config.get(section)
    if not isinstance(part, dict):
        raise ValueError(f"{path}: the config in the metadata has no '{section}' section; the file is damaged")
    missing = sorted(NEEDED_KEYS[section] - part.keys())
    unknown = sorted(part.keys() - KNOWN_KEYS[section]) if section in KNOWN_KEYS else []
    problems = [f"missing '{section}.{k}'" for k in missing] + [f"unknown key '{section}.{k}'" for k in unknown]
    if problems:
        raise ValueError(f"{path}: the config in the metadata does not fit this module ({'; '.join(problems)}); "
                         "use the python/seqgan_torch of the seqgan that wrote the file")
    return part


def choose_weights(path, meta, tensors, weights):
    """(the raw or the EMA tensors, under the module's names; "ema" or "raw"), as seqgan's
    load_checkpoint chooses: a file trained with an EMA holds the average under "ema.NAME" and
    "ema_decay" in its metadata; "auto" takes the average when there is one."""
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"unknown weights '{weights}'; use 'auto' (the EMA weights when the file has them), "
                         "'ema' or 'raw'")
    has_ema = "ema_decay" in meta
    if weights == "ema" and not has_ema:
        raise ValueError(f"{path} holds no EMA weights: it was trained without an exponential moving average; "
                         "load its raw weights (weights='raw'), or train with an EMA (*.ema_decay > 0)")
    ema = has_ema and weights != "raw"
    chosen = {}
    for name, t in tensors.items():
        is_ema = has_ema and name.startswith(EMA_PREFIX)
        if is_ema == ema:
            chosen[name[len(EMA_PREFIX):] if ema else name] = t
    return chosen, "ema" if ema else "raw"


def load_strict(module, tensors, path):
    """Copies `tensors` into the module's parameters and buffers after checking that they fit it
    exactly; raises ValueError listing every difference at once, and copies nothing then."""
    expected = module.state_dict()
    problems = []
    for name, dst in expected.items():
        src = tensors.get(name)
        if src is None:
            problems.append(f"missing tensor '{name}' {list(dst.shape)} {dst.dtype}")
        elif src.shape != dst.shape:
            problems.append(f"tensor '{name}' has wrong shape; expected {list(dst.shape)}, got {list(src.shape)}")
        elif src.dtype != dst.dtype:
            problems.append(f"tensor '{name}' has wrong dtype; expected {dst.dtype}, got {src.dtype}")
    for name in sorted(tensors.keys() - expected.keys()):
        problems.append(f"unexpected tensor '{name}' {list(tensors[name].shape)} {tensors[name].dtype}")
    if problems:
        raise ValueError(f"{path}: the tensors do not fit the model its config describes ({len(problems)} "
                         "difference(s)):\n  " + "\n  ".join(problems) +
                         "\n---> HINT: was the file edited, or written by another version of seqgan? Use the "
                         "python/seqgan_torch of the seqgan that wrote it")
    module.load_state_dict({name: tensors[name] for name in expected}, strict=True)


def check_sizes(path, tensors, config, sections):
    """Before anything is allocated: every size and count the configuration's `sections` give
    (the keys the modules read) is at most the largest dimension or the number of tensors the file
    holds, as it is for any file whose tensors the configuration describes. A damaged
    configuration is refused here rather than built into a model of any size."""
    bound = max([len(tensors)] + [d for t in tensors.values() for d in t.shape])
    for section in sections:
        part = config.get(section)
        for key in sorted(NEEDED_KEYS[section] & part.keys()) if isinstance(part, dict) else []:
            value = part[key]
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > bound:
                    raise ValueError(f"{path}: {section}.{key} = {value} in the config does not fit the file's tensors "
                                     f"(none is larger than {bound}); the file is damaged")


def build_model(path, make):
    """make(), the module the file's configuration describes. A configuration that describes no
    module (values of the wrong type, impossible or unallocatable sizes) is a ValueError naming
    the file, as every other fault of a damaged file is."""
    try:
        return make()
    except ValueError:
        raise
    except (TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError, RuntimeError,
            MemoryError) as e:
        raise ValueError(f"{path}: the config in the metadata describes no model this module can build "
                         f"({type(e).__name__}: {str(e)[:200]}); the file is damaged") from None


def load_tokenizer(path, weights="auto", device="cpu"):
    """The tokenizer (either phase) in a `tokenizer.safetensors` of `seqgan train-tokenizer`, as a
    seqgan_torch.models.Tokenizer in eval mode on `device`. weights: "auto" (the file's EMA weights
    when it has them), "ema" or "raw". Besides the module's own attributes it carries `config`
    (seqgan's whole config dict), `phase`, `step` and `weights` ("ema" or "raw": what was loaded)."""
    tensors, meta, config = read_model_file(path, ("tokenizer",))
    data = config_section(config, "data", path)
    check_sizes(path, tensors, config, ("tokenizer", "quantizer"))
    model = build_model(path, lambda: Tokenizer(config_section(config, "tokenizer", path),
                                                config_section(config, "quantizer", path), int(data["channels"]),
                                                resolution=int(data["resolution"])))
    chosen, model.weights = choose_weights(path, meta, tensors, weights)
    load_strict(model, chosen, path)
    model.config, model.step, model.phase = config, int(meta.get("step", 0)), int(meta.get("phase", 1))
    return model.to(device).eval()


def token_space(meta, path):
    """The TokenSpace a transformer file records in its metadata."""
    def get(key):
        if key not in meta:
            raise ValueError(f"{path}: metadata lacks '{key}'; pass a transformer.safetensors written by "
                             "`seqgan train-transformer`")
        try:
            return int(meta[key])
        except ValueError:
            raise ValueError(f"{path}: metadata '{key}' is not a number: '{meta[key]}'") from None

    classes = get("num_classes")
    null = "null_class" in meta and get("null_class") == 1 and classes > 0
    return TokenSpace(get("codebook_size"), get("length"), classes, null)


def load_transformer(path, weights="auto", device="cpu"):
    """The AR or NAR transformer in a `transformer.safetensors` of `seqgan train-transformer`, as a
    seqgan_torch.models.Transformer in eval mode on `device` (`causal`: AR). weights as for
    load_tokenizer. It carries `space` (TokenSpace), `config`, `class_names` (may be empty),
    `step` and `weights`."""
    tensors, meta, config = read_model_file(path, ("transformer-ar", "transformer-nar"))
    check_sizes(path, tensors, config, ("transformer",))
    model = build_model(path, lambda: Transformer(config_section(config, "transformer", path),
                                                  token_space(meta, path), meta["kind"] == "transformer-ar"))
    chosen, model.weights = choose_weights(path, meta, tensors, weights)
    load_strict(model, chosen, path)
    try:
        model.class_names = json.loads(meta["class_names"]) if "class_names" in meta else []
        if not isinstance(model.class_names, list) or not all(isinstance(n, str) for n in model.class_names):
            raise json.JSONDecodeError("not a list of strings", meta["class_names"], 0)
    except json.JSONDecodeError:
        raise ValueError(f"{path}: metadata 'class_names' is not a JSON list of names; the file is damaged") from None
    model.config, model.step = config, int(meta.get("step", 0))
    return model.to(device).eval()
