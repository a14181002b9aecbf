"""The app's model card text: the shipped model's card reads as a person would want it, one line per training
phase (not a dump of the card's JSON)."""
import json

from app.about import model_card_markdown
from nfs.pipeline import SHIPPED_MODEL_DIR


def test_the_shipped_model_card_lists_each_training_phase_on_its_own_line():
    card = json.loads((SHIPPED_MODEL_DIR / "model_card.json").read_text())
    text = model_card_markdown(card, str(SHIPPED_MODEL_DIR))
    phases = [line for line in text.splitlines() if line.startswith("  - phase ")]
    assert len(phases) == len(card["history"]) >= 1
    for line, phase in zip(phases, card["history"]):
        assert line.startswith(f"  - phase {phase['phase']}: ") and f"({phase['steps']} steps" in line
    assert "{'phase'" not in text and "[{" not in text
