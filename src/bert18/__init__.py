"""bert18: pretrain and transfer BERT-family encoders (BERT, RoBERTa, ALBERT, ERNIE) with Hugging Face.

Importing the package registers the ``bert18`` model type with the transformers Auto classes, so
``AutoConfig``, ``AutoModel`` and every ``AutoModelFor<Task>`` below load bert18 checkpoints, and
marks each class for ``save_pretrained`` to ship its code (``trust_remote_code=True`` loading where
bert18 is not installed).
"""

import transformers

from .configuration_bert18 import PRESETS, PRETRAINING_TASKS, Bert18Config
from .lora import install_peft_defaults
from .modeling_bert18 import (
    AUTO_CLASSES,
    Bert18ForLongSequenceClassification,
    Bert18ForMaskedLM,
    Bert18ForMultipleChoice,
    Bert18ForPreTraining,
    Bert18ForQuestionAnswering,
    Bert18ForSequenceClassification,
    Bert18ForTokenClassification,
    Bert18Model,
    Bert18PreTrainedModel,
)
from .params import ParameterReport, count_parameters

__version__ = "0.1.0"


def _register_with_auto_classes() -> None:
    transformers.AutoConfig.register(Bert18Config.model_type, Bert18Config, exist_ok=True)
    Bert18Config.register_for_auto_class()
    for auto_name, model_name in AUTO_CLASSES.items():
        model_class = globals()[model_name]
        getattr(transformers, auto_name).register(Bert18Config, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_name)
    # The long-document classifier shares bert18's config with Bert18ForSequenceClassification, and an
    # Auto class maps a config to one model, so it is not registered there. Marking it still makes
    # save_pretrained ship the code and name it in auto_map (trust_remote_code loading without bert18).
    Bert18ForLongSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")


_register_with_auto_classes()
install_peft_defaults()  # LoraConfig() without target_modules adapts query and value, as for BERT

__all__ = [
    "PRESETS",
    "PRETRAINING_TASKS",
    "Bert18Config",
    "Bert18Model",
    "Bert18PreTrainedModel",
    "Bert18ForPreTraining",
    "Bert18ForMaskedLM",
    "Bert18ForSequenceClassification",
    "Bert18ForTokenClassification",
    "Bert18ForQuestionAnswering",
    "Bert18ForMultipleChoice",
    "Bert18ForLongSequenceClassification",
    "ParameterReport",
    "count_parameters",
]
