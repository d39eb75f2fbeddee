"""Shared fixtures: a real PostgreSQL server and a real HTTP feed server."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from pipeline import db
from tests.helpers import FEEDS, free_port

# pgserver logs from an atexit hook after pytest has closed its streams: keep it to warnings.
logging.getLogger("pgserver").setLevel(logging.WARNING)
# Airflow is imported in-process by a few tests (the smtp hook): keep its home out of ~.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="fs-airflow-home-"))
# The test feed servers listen on 127.0.0.1, which the outbound policy refuses unless allowed.
os.environ.setdefault("FINSENT_FETCH_ALLOW_HOSTS", "127.0.0.1")
# MiniLM+LR embeds every training text: minutes on a CPU. The suite's evaluations score the cheaper peers;
# bench.peers measures all four.
os.environ.setdefault("FINSENT_EVAL_PEERS", "tfidf_lr,vader,finvader")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """A real PostgreSQL server: FINSENT_TEST_DATABASE_URL if set, else an embedded one."""
    url = os.environ.get("FINSENT_TEST_DATABASE_URL")
    if url:
        yield url
        return
    # A short path: Unix socket paths are limited to about 100 bytes.
    datadir = Path(tempfile.mkdtemp(prefix="fspg-", dir="/tmp"))
    url = db.start_embedded(datadir)
    yield url
    import pgserver

    try:
        pgserver.get_server(str(datadir), cleanup_mode="stop").cleanup()
    except Exception:
        pass
    shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture()
def db_url(pg_server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, migrated database per test; also exported as DATABASE_URL."""
    name = "t_" + uuid.uuid4().hex[:12]
    url = db.ensure_database(pg_server_url, name)
    db.migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    conn = psycopg2.connect(pg_server_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.close()


@pytest.fixture()
def feed_server():
    from tests.feedserver import FeedServer

    with FeedServer(FEEDS) as server:
        yield server


@pytest.fixture(scope="session")
def airflow_env(pg_server_url, tmp_path_factory) -> dict:
    """Environment for real Airflow processes with a migrated PostgreSQL metadata DB."""
    import subprocess

    from pipeline import airflow_env as af

    home = tmp_path_factory.mktemp("airflow")
    env = af.build_env(pg_server_url, home=home)
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env


@pytest.fixture(scope="session")
def smollm2_dir():
    """The real packaged base model, de-quantised once into the state folder."""
    from pipeline.classify.model import base

    return base.smollm2_dir()


@pytest.fixture(scope="session")
def tiny_base(smollm2_dir, tmp_path_factory):
    """A tiny randomly initialised GPT (Llama) with the real SmolLM2 tokenizer, saved
    as a local folder: exercises the 'any local causal LM' option in seconds."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-gpt")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_models(tiny_base, tmp_path_factory):
    """Two tiny trained + evaluated model directories: (heads fast path, finetune path)."""
    from pipeline.classify.evaluation.evaluate import evaluate
    from pipeline.classify.training.train import train_from

    root = tmp_path_factory.mktemp("models")
    heads = train_from(dict(base_model=str(tiny_base), method="heads", limit_per_task=120, output_root=str(root)))
    evaluate(heads)
    ft = train_from(
        dict(
            base_model=str(tiny_base),
            method="finetune",
            train_layers=0,
            limit_per_task=96,
            epochs=1,
            batch_size=16,
            eval_steps=4,
            learning_rate=1e-3,
            output_root=str(root),
        )
    )
    evaluate(ft)
    return heads, ft


@pytest.fixture()
def smtp_port(monkeypatch):
    """A free port and the Airflow SMTP connection pointing at it (start ``SMTPServer(port)`` there)."""
    port = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_ALERTS",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {
                    "disable_tls": True,
                    "disable_ssl": True,
                    "from_email": "alerts@example.com",
                    "timeout": 5,
                    "retry_limit": 1,
                },
            }
        ),
    )
    return port
