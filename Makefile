# The targets CI runs (.ci/run calls `make setup test`).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint format bench mini-data train-mini

# setup also installs axe-core for the accessibility tests (skipped without it) where npm exists.
setup:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/a11y --no-audit --no-fund --silent; fi

test:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The CPU benchmarks (~12 min on 2 cores), one after another so that none slows another; results in bench/results/.
bench:
	HF_HUB_OFFLINE=1 $(BIN)/python bench/throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/demo_time.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/samplers.py --stories 12 --steps 4 --draw-steps 2 4 8 12 25
	HF_HUB_OFFLINE=1 $(BIN)/python bench/generation.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/render.py

# SEED-Story-Mini from scratch (docs/mini-model.md): the world, the tokenizer, then five training runs.
# The ViT and the VAE pre-train independently, and so do stages 1 and 2 afterwards: `make -j2 train-mini` runs
# each pair side by side. Every run resumes from its newest checkpoint, so an interrupted `make train-mini`
# continues where it stopped.
# Where the world and the runs go: the paths configs/train/mini_*.yaml read.
WORLD := data/world
MINI := runs/mini
TRAIN := OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 $(BIN)/seed-story train
# Paired runs go side by side under -j2: one thread each (two 2-thread runs on 2 cores slow each other badly).
TRAIN_SIDE := OMP_NUM_THREADS=$(or $(SIDE_THREADS),1) HF_HUB_OFFLINE=1 $(BIN)/seed-story train

mini-data: $(WORLD)/shards/ingest-report.json $(WORLD)/caption_shards/ingest-report.json $(WORLD)/tokenizer/tokenizer.json

$(WORLD)/stories.jsonl:
	$(BIN)/seed-story data storyworld --out $(WORLD) --stories 2000 --seed 0

$(WORLD)/shards/ingest-report.json: $(WORLD)/stories.jsonl
	$(BIN)/seed-story data ingest-storystream $(WORLD)/stories.jsonl $(WORLD)/images $(WORLD)/shards

$(WORLD)/caption_shards/ingest-report.json: $(WORLD)/stories.jsonl
	$(BIN)/seed-story data ingest-storystream $(WORLD)/captions.jsonl $(WORLD)/images $(WORLD)/caption_shards --chunk-length 1

$(WORLD)/tokenizer/tokenizer.json: $(WORLD)/stories.jsonl
	$(BIN)/seed-story data train-tokenizer $(WORLD)/stories.jsonl --out $(WORLD)/tokenizer

$(MINI)/vision/final/seed_story.json: $(WORLD)/shards/ingest-report.json $(WORLD)/tokenizer/tokenizer.json
	$(TRAIN_SIDE) vision --config configs/train/mini_vision.yaml --resume

$(MINI)/vae/final/seed_story.json: $(WORLD)/shards/ingest-report.json $(WORLD)/tokenizer/tokenizer.json
	$(TRAIN_SIDE) vae --config configs/train/mini_vae.yaml --resume

$(MINI)/stage1/final/seed_story.json: $(MINI)/vision/final/seed_story.json $(MINI)/vae/final/seed_story.json
	$(TRAIN_SIDE) stage1 --config configs/train/mini_stage1.yaml --resume
	$(TRAIN_SIDE) stage1 --config configs/train/mini_stage1_late.yaml --resume
	$(TRAIN_SIDE) stage1 --config configs/train/mini_stage1_longer.yaml --resume

# Stage 2: caption pre-training, story tuning, more story tuning, annealing (the committed weights trained these
# on an H100).
$(MINI)/stage2_anneal/final/seed_story.json: $(MINI)/vision/final/seed_story.json $(MINI)/vae/final/seed_story.json \
		$(WORLD)/caption_shards/ingest-report.json
	$(TRAIN_SIDE) stage2 --config configs/train/mini_stage2_captions.yaml --resume
	$(TRAIN_SIDE) stage2 --config configs/train/mini_stage2.yaml --resume
	$(TRAIN_SIDE) stage2 --config configs/train/mini_stage2_late.yaml --resume
	$(TRAIN_SIDE) stage2 --config configs/train/mini_stage2_anneal.yaml --resume

$(MINI)/stage3/final/seed_story.json: $(MINI)/stage1/final/seed_story.json $(MINI)/stage2_anneal/final/seed_story.json
	$(TRAIN) stage3 --config configs/train/mini_stage3.yaml --resume

train-mini: $(MINI)/stage3/final/seed_story.json
