"""Run the pretraining recipe and record, per rank, which examples it collated and the final weights.

Launched by tests/test_recipes.py both as one process and under `accelerate launch` with two
gloo ranks; the recipe code is bert18's own, only the collator is wrapped to record indices.
"""

import json
import sys
from pathlib import Path

import torch

from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining


class RecordingCollator:
    def __init__(self, collator):
        self.collator = collator
        self.seen: list[int] = []
        self.token_ids: set[int] = set()

    def __call__(self, examples):
        self.seen.extend(int(example["example_index"]) for example in examples)
        self.token_ids.update(int(token) for example in examples for token in example["input_ids"])
        return self.collator(examples)


def main() -> None:
    recipe = parse_recipe(sys.argv[1], sys.argv[2:])
    run = build_pretraining(recipe)
    recorder = RecordingCollator(run.trainer.data_collator)
    run.trainer.data_collator = recorder
    run.trainer.train()
    rank = recipe.training.process_index
    output = Path(recipe.training.output_dir)
    torch.save(run.trainer.accelerator.unwrap_model(run.trainer.model).state_dict(), output / f"rank{rank}.pt")
    losses = [entry["loss"] for entry in run.trainer.state.log_history if "loss" in entry]
    record = {
        "rank": rank,
        "world_size": recipe.training.world_size,
        "seen": recorder.seen,
        "losses": losses,
        "token_ids": sorted(recorder.token_ids),
        "distributed_type": str(run.trainer.accelerator.distributed_type),
    }
    (output / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
