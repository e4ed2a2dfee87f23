"""The run's one accuracy budget: what an artifact may lose against the ORIGINAL model, in the task's unit.

Decided in one function, :func:`decide_budget`, and nowhere else. Stages spend from it in turn: prune's
fine-tune first, then quantize's fallbacks, each told what is left (``Budget.left``) and each saying how much it
used; eval gates every artifact against the whole of it on the test split. A stage that only knew its own parent
would call a pruned model's INT8 graph "+0.00" while eval failed the run.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Budget(BaseModel):
    """``max_drop`` against the original, in ``unit``; ``spent``: what the stages before this one already lost (on
    val, against the original)."""

    model_config = ConfigDict(frozen=True)

    max_drop: float
    unit: str
    spent: float = 0.0

    @property
    def left(self) -> float:
        """What the next stage may still lose against its own parent (never below zero)."""
        return max(0.0, round(self.max_drop - self.spent, 4))

    def after(self, used: float) -> Budget:
        """The budget the next stage gets once this one used ``used``."""
        return self.model_copy(update={"spent": round(self.spent + max(used, 0.0), 4)})

    def record(self, used: float) -> dict[str, Any]:
        """What a stage's manifest says of its share: the whole, what was spent before it, what it used, what is left
        (negative when it overspent)."""
        return {"max_drop": self.max_drop, "unit": self.unit, "spent_before": self.spent, "used": round(used, 4),
                "left": round(self.max_drop - self.spent - used, 4)}

    def line(self, used: float) -> str:
        """A stage's words for its share: "used 0.12 of the 0.5 pts budget (0.30 spent before; 0.08 left)"."""
        before = f"{self.spent:.2f} spent before; " if self.spent else ""
        left = self.max_drop - self.spent - used
        return (f"used {used:.2f} of the {self.max_drop:g} {self.unit} budget ({before}"
                + (f"{left:.2f} left)" if left >= 0 else f"over it by {-left:.2f})"))


def decide_budget(task, recipe: Any = None, *, override: float | None = None) -> Budget:
    """The run's budget: ``override`` (a command's ``--max-drop``, or a bundle's recorded budget) when given, else
    the recipe's ``eval.max_drop`` (older name ``max_accuracy_drop``), else its ``quantize.max_drop``, else the
    task's default. ``recipe``: a typed Recipe, or the dict a manifest recorded (None: the task's default)."""
    from edgepipe.recipe import EvalConfig, Recipe

    configured = override
    if configured is None and isinstance(recipe, Recipe):
        configured = recipe.eval.max_drop
        if configured is None and recipe.quantize is not None:
            configured = recipe.quantize.max_drop
    elif configured is None and isinstance(recipe, dict):
        configured = EvalConfig.model_validate(recipe.get("eval") or {}).max_drop
        quantize = recipe.get("quantize")
        if configured is None and isinstance(quantize, dict) and quantize.get("max_drop") is not None:
            configured = float(quantize["max_drop"])
    return Budget(max_drop=float(task.default_max_drop if configured is None else configured), unit=task.unit)
