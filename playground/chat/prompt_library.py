"""The built-in prompt library: the common prompting techniques and tasks (zero-shot, few-shot,
chain-of-thought; summarization, translation, question answering, classification, natural language
inference, extraction), written for a small instruct model: one short instruction, the answer format
spelled out, {placeholders} for what the user fills in.

Plain data and one pure function, `compose_message`, shared by the built-ins and the templates users save
(playground/chat/models.PromptTemplate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A placeholder is a {name} made of lowercase letters, digits and underscores: JSON braces such as
# {"name": ...} in an extraction template are not placeholders.
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
# Where the few-shot examples go; without it they come first, before the template.
EXAMPLES_SLOT = "{examples}"
BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinPrompt:
    key: str  # the ?prompt=builtin:<key> of the chat page
    name: str
    category: str
    description: str
    system: str
    template: str
    examples: tuple[dict[str, str], ...] = field(default=())

    @property
    def placeholders(self) -> list[str]:
        return placeholders(self.template)

    @property
    def ref(self) -> str:
        return BUILTIN_PREFIX + self.key


def placeholders(template: str) -> list[str]:
    """The {placeholders} of a template the user still has to replace, in order, once each."""
    names = dict.fromkeys(PLACEHOLDER.findall(template))
    names.pop("examples", None)
    return list(names)


def render_examples(examples: list[dict[str, str]] | tuple[dict[str, str], ...]) -> str:
    return "\n\n".join(f"Input: {e['input']}\nOutput: {e['output']}" for e in examples)


def compose_message(template: str, examples: list[dict[str, str]] | tuple[dict[str, str], ...] = ()) -> str:
    """The user message a template becomes: the few-shot examples rendered where {examples} stands (or
    first), the other {placeholders} left for the user to replace. Plain string replacement rather than
    str.format: braces the user writes (JSON, code) must survive untouched."""
    shots = render_examples(examples)
    if EXAMPLES_SLOT in template:
        return template.replace(EXAMPLES_SLOT, shots)
    return f"{shots}\n\n{template}" if shots else template


TECHNIQUE = "Prompting technique"
TASK = "Task"

BUILTINS: tuple[BuiltinPrompt, ...] = (
    BuiltinPrompt(
        key="zero-shot",
        name="Zero-shot",
        category=TECHNIQUE,
        description="Only an instruction: the model relies on what it already knows.",
        system="You are a helpful assistant. Follow the instruction exactly and answer briefly.",
        template="{instruction}\n\n{text}",
    ),
    BuiltinPrompt(
        key="few-shot",
        name="Few-shot",
        category=TECHNIQUE,
        description="A few solved examples show the task and the answer format before the new input.",
        # Measured on the 135M default model: a system prompt naming the answer words helps it most.
        system="Reply with one word: positive or negative.",
        template="Label the sentiment of each input as positive or negative.\n\n{examples}\n\n"
        "Input: {text}\nOutput:",
        examples=(
            {"input": "The soup was cold and the waiter ignored us.", "output": "negative"},
            {"input": "What a lovely film, I would watch it again tomorrow.", "output": "positive"},
            {"input": "The battery died after two days.", "output": "negative"},
        ),
    ),
    BuiltinPrompt(
        key="chain-of-thought",
        name="Chain-of-thought",
        category=TECHNIQUE,
        description="Asks for the reasoning step by step before the answer: helps with multi-step problems.",
        system="You solve problems carefully. Show your reasoning, then give the final answer.",
        template="{question}\n\nLet's think step by step, then write the final answer on its own line "
        'starting with "Answer:".',
    ),
    BuiltinPrompt(
        key="summarization",
        name="Summarization",
        category=TASK,
        description="A short summary that keeps the key points and the tone of the text.",
        system="You summarize texts faithfully, without adding facts.",
        template="Summarize the text below in {sentences} sentences.\n\nText:\n{text}\n\nSummary:",
    ),
    BuiltinPrompt(
        key="translation",
        name="Translation",
        category=TASK,
        description="Translates a text, keeping its meaning, idioms and tone.",
        system="You are a careful translator. Reply with the translation only.",
        template="Translate the text below from {source_language} to {target_language}.\n\n"
        "Text: {text}\n\nTranslation:",
    ),
    BuiltinPrompt(
        key="question-answering",
        name="Question answering",
        category=TASK,
        description="Answers a question from the context given, and says so when the context does not tell.",
        system="You answer questions using only the context given. If the context does not contain "
        'the answer, reply "I don\'t know".',
        template="Context:\n{context}\n\nQuestion: {question}\n\nAnswer:",
    ),
    BuiltinPrompt(
        key="classification",
        name="Classification",
        category=TASK,
        description="Puts a text into one of the labels you list (spam or not, topics, feedback kinds...).",
        system="You classify texts. Reply with exactly one of the labels, nothing else.",
        template="Classify the text into one of these labels: {labels}.\n\nText: {text}\n\nLabel:",
    ),
    BuiltinPrompt(
        key="nli",
        name="Natural language inference",
        category=TASK,
        description="Does the hypothesis follow from the premise? Entailment, neutral or contradiction.",
        system="You judge whether a hypothesis follows from a premise. Reply with one word: entailment, "
        "neutral or contradiction.",
        template="Premise: {premise}\nHypothesis: {hypothesis}\n\n"
        "Does the premise entail the hypothesis, contradict it, or neither (neutral)?\nRelation:",
    ),
    BuiltinPrompt(
        key="extraction",
        name="Extraction",
        category=TASK,
        description="Pulls the fields you name out of a text, as a JSON object.",
        system="You extract information from texts. Reply with a JSON object only; use null for a field "
        "the text does not mention.",
        template='Extract these fields from the text: {fields}.\n\nText: {text}\n\nJSON (e.g. {"field": '
        '"value"}):',
    ),
)
BY_KEY = {p.key: p for p in BUILTINS}


def builtin(ref: str) -> BuiltinPrompt | None:
    """The built-in prompt named by "builtin:<key>" (or a bare key); None when there is none."""
    return BY_KEY.get(ref.removeprefix(BUILTIN_PREFIX))
