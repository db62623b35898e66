"""A synthetic store x product sales dataset, written as partitioned Parquet.

The data is made up (no real shop is behind it) but shaped like the reference
architecture's many-models example: each (store, product) pair has weekly
rows of price, promotion flag and temperature, and units sold that depend on
them through coefficients of that pair's own. One model per pair therefore
beats one model for all.

Deterministic: partition (s, p) is drawn from ``numpy.random.default_rng((seed,
s, p))``, so it is the same whatever the scale, the order or the chunking, and
a dataset is written one store at a time (memory bounded by one store).
Layout: ``<out>/store=<s>/part-0.parquet`` (Hive partitioning by the first key),
each file holding every product of its store.

    python -m sales_forecast.generate --stores 100 --products 100 --rows 200 --out data/sales
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("store", "product", "week", "price", "promotion", "temperature", "sales")


def partition(store: int, product: int, rows: int, seed: int = 42) -> pd.DataFrame:
    """The weekly rows of one (store, product) pair."""
    rng = np.random.default_rng((seed, store, product))
    base = rng.uniform(50, 500)           # weekly units at the usual price, 15 degC
    usual_price = rng.uniform(1.0, 30.0)
    elasticity = rng.uniform(0.3, 0.9)    # share of sales lost per 100% price rise
    uplift = rng.uniform(0.05, 0.6)       # share of sales gained on promotion
    heat = rng.uniform(-0.005, 0.01)      # share of sales per degree above 15 degC
    week = np.arange(1, rows + 1)
    price = np.round(usual_price * rng.uniform(0.6, 1.4, rows), 2)
    promotion = (rng.random(rows) < 0.2).astype(np.int64)
    temperature = np.round(15 + 12 * np.sin(2 * np.pi * week / 52) + rng.normal(0, 3, rows), 1)
    demand = (1 - elasticity * (price / usual_price - 1) + uplift * promotion
              + heat * (temperature - 15))
    sales = np.clip(base * demand + rng.normal(0, 0.05 * base, rows), 0, None).round(1)
    return pd.DataFrame({
        "store": np.int64(store), "product": np.int64(product), "week": week, "price": price,
        "promotion": promotion, "temperature": temperature, "sales": sales,
    })


def store_frame(store: int, products: int, rows: int, seed: int = 42) -> pd.DataFrame:
    """Every product of one store."""
    return pd.concat([partition(store, p, rows, seed) for p in range(1, products + 1)],
                     ignore_index=True)


def write(out: Path, stores: int = 5, products: int = 4, rows: int = 104,
          seed: int = 42) -> Path:
    """Write the dataset under ``out`` (replacing what is there) and return ``out``."""
    if stores < 1 or products < 1 or rows < 1:
        raise ValueError("stores, products and rows must be at least 1")
    if out.exists():
        shutil.rmtree(out)
    for store in range(1, stores + 1):
        directory = out / f"store={store}"
        directory.mkdir(parents=True)
        frame = store_frame(store, products, rows, seed).drop(columns="store")
        frame.to_parquet(directory / "part-0.parquet", index=False)
    return out


def reference_frame() -> pd.DataFrame:
    """The small default dataset (5 stores x 4 products x 104 weeks) as one frame."""
    return pd.concat([store_frame(s, 4, 104) for s in range(1, 6)], ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=5)
    parser.add_argument("--products", type=int, default=4)
    parser.add_argument("--rows", type=int, default=104, help="weeks per store and product")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("data/sales"))
    args = parser.parse_args(argv)
    write(args.out, args.stores, args.products, args.rows, args.seed)
    print(f"wrote {args.stores * args.products} partitions x {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()
