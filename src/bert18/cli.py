"""The ``bert18`` command: ``demo``, ``convert``, ``params``."""

import argparse
import sys


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.output_dir, steps=args.steps, seed=args.seed)


def _convert(args: argparse.Namespace) -> None:
    from .convert import convert_checkpoint

    destination = convert_checkpoint(args.source, args.destination, overwrite=args.overwrite)
    print(f"converted {args.source} -> {destination}")


def _params(args: argparse.Namespace) -> None:
    from .configuration_bert18 import PRESETS, Bert18Config
    from .params import count_parameters

    if args.preset == "all":
        for name in PRESETS:
            report = count_parameters(name)
            print(f"{name:<16}{report.total:>14,}")
        return
    print(count_parameters(args.preset or Bert18Config.from_pretrained(args.config)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert18", description="Pretrain and transfer BERT-family encoders.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="offline end-to-end run: convert a real BERT, count, pretrain a tiny model")
    demo.add_argument("--output-dir", default="demo-output", help="where checkpoints are written")
    demo.add_argument("--steps", type=int, default=200, help="pretraining steps of the tiny model")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    convert = commands.add_parser("convert", help="convert a BERT / RoBERTa / ALBERT checkpoint to bert18")
    convert.add_argument("source", help="checkpoint folder or Hub id")
    convert.add_argument("destination", help="folder to write (must be empty or absent unless --overwrite)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    convert.set_defaults(run=_convert)

    params = commands.add_parser("params", help="parameter count by component")
    which = params.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", help="a preset name (see Bert18Config.from_preset), or 'all' for totals")
    which.add_argument("--config", help="a bert18 config.json or checkpoint folder")
    params.set_defaults(run=_params)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileExistsError, OSError) as error:
        print(f"bert18 {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
