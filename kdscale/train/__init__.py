"""Training: one loop for S >= 1 students (`loop.train_students`; `train` for one), the students it
moves (one module, or a vmapped pack: `students`), and how a recipe becomes steps and learning
rates (`schedule`). Pure PyTorch: no Ray, no MLflow.
"""
from kdscale.train.loop import TrainData, TrainResult, forward_flops, initial_model, train, train_students
from kdscale.train.metrics import accuracy, agreement, sequence_accuracy, test_metrics
from kdscale.train.schedule import derive_seed, lr_factor, make_optimizer, plan_steps, precision_context
from kdscale.train.students import EVAL_BATCH, packable, predict

__all__ = ["TrainData", "TrainResult", "accuracy", "agreement", "sequence_accuracy", "test_metrics", "forward_flops", "initial_model", "train", "train_students", "derive_seed",
           "lr_factor", "make_optimizer", "plan_steps", "precision_context", "EVAL_BATCH", "packable", "predict"]
