"""The conversation tree: versions of a message, the branch shown, switching and deleting versions."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.db import transaction

from playground.chat.models import Conversation, Message
from playground.chat.services.conversations import get_message


# --- the conversation tree ------------------------------------------------------------------------
@dataclass(frozen=True)
class Versions:
    """Where a message sits among its siblings (same parent, same role): the versions of one turn."""

    index: int  # 1-based
    count: int
    previous: int | None
    next: int | None
    # (version number, messages its branch goes on for) for the other versions that go on past this
    # turn: what a new version (regenerate, continue, branch, edit) left on the old one, which the page
    # points back to.
    later_elsewhere: tuple[tuple[int, int], ...] = ()


@dataclass
class Tree:
    """Who follows whom in one conversation, from ids alone (no message text is loaded).

    A message saved with no parent that is neither the first message nor an edit of a first message
    follows the message saved just before it: conversations written before messages were linked read as
    one branch."""

    order: list[int]  # ids, oldest first
    parent: dict[int, int | None]
    role: dict[int, str]
    children: dict[int | None, list[int]]

    def siblings(self, message_id: int) -> list[int]:
        role = self.role[message_id]
        return [c for c in self.children.get(self.parent[message_id], []) if self.role[c] == role]

    def versions(self, message_id: int) -> Versions:
        siblings = self.siblings(message_id)
        i = siblings.index(message_id)
        later = ((n, self.shown_after(s)) for n, s in enumerate(siblings, start=1) if s != message_id)
        return Versions(
            index=i + 1,
            count=len(siblings),
            previous=siblings[i - 1] if i > 0 else None,
            next=siblings[i + 1] if i + 1 < len(siblings) else None,
            later_elsewhere=tuple((n, count) for n, count in later if count),
        )

    def path_to(self, message_id: int) -> list[int]:
        """The ids from the first message down to this one."""
        path: list[int] = []
        at: int | None = message_id
        while at is not None and at not in path:  # `not in path`: a corrupt loop cannot hang the page
            path.append(at)
            at = self.parent[at]
        return path[::-1]

    def subtree(self, message_id: int) -> list[int]:
        """This message and every message after it in any branch below it."""
        found, todo = [], [message_id]
        while todo:
            at = todo.pop()
            found.append(at)
            todo.extend(self.children.get(at, []))
        return found

    def shown_after(self, message_id: int) -> int:
        """How many messages follow this one on the branch that switching to it shows."""
        return len(self.path_to(self.newest_leaf(message_id))) - len(self.path_to(message_id))

    @functools.cached_property
    def position(self) -> dict[int, int]:
        """Each message's place in `order` (built once: every version's switcher asks for it)."""
        return {m: i for i, m in enumerate(self.order)}

    def newest_leaf(self, message_id: int) -> int:
        """The newest message without followers below this one: what switching to it shows."""
        leaves = [m for m in self.subtree(message_id) if not self.children.get(m)]
        return max(leaves, key=self.position.__getitem__)


def message_tree(conversation: Conversation) -> Tree:
    rows = conversation.messages.order_by("created", "id").values_list(
        "id", "parent_id", "role", "provenance__action"
    )
    tree = Tree(order=[], parent={}, role={}, children={})
    for message_id, parent_id, role, action in rows:
        if parent_id is None and tree.order and action != "edit":
            parent_id = tree.order[-1]  # saved before messages were linked: it follows the one before
        tree.order.append(message_id)
        tree.parent[message_id] = parent_id
        tree.role[message_id] = role
        tree.children.setdefault(parent_id, []).append(message_id)
    return tree


def with_versions(message: Message) -> Message:
    """One message with its `versions` (the page's switcher), as history() gives them."""
    message.versions = message_tree(message.conversation).versions(message.pk)  # type: ignore[attr-defined]
    return message


def show_version(owner, message_id: int) -> Conversation:
    """Show the branch through this message: its newest descendant becomes the conversation's current."""
    message = get_message(owner, message_id)
    conversation = message.conversation
    conversation.current_id = message_tree(conversation).newest_leaf(message.pk)
    conversation.save(update_fields=["current"])
    return conversation


def delete_message(owner, message_id: int) -> Conversation:
    """Delete a message and everything below it; then show a sibling's branch, else the parent's."""
    message = get_message(owner, message_id)
    conversation = message.conversation
    tree = message_tree(conversation)
    siblings = tree.siblings(message.pk)
    i = siblings.index(message.pk)
    others = siblings[:i] + siblings[i + 1 :]
    with transaction.atomic():
        # Listed, not left to on_delete: Message.parent is SET_NULL and unlinked rows follow the one
        # before them, so the whole subtree has to go in one statement.
        Message.objects.filter(pk__in=tree.subtree(message.pk)).delete()
        conversation.current_id = (
            tree.newest_leaf(others[max(i - 1, 0)]) if others else tree.parent[message.pk]
        )
        conversation.save(update_fields=["current", "updated"])
    return conversation


def history(conversation: Conversation) -> list[Message]:
    """The branch shown: from Conversation.current (else the newest message) up through the parents,
    oldest first. Each message carries `versions` (see Versions) for the page's ‹ 2/3 › switcher."""
    tree = message_tree(conversation)
    if not tree.order:
        return []
    tip = conversation.current_id if conversation.current_id in tree.parent else tree.order[-1]
    ids = tree.path_to(tip)
    found = conversation.messages.in_bulk(ids)
    branch = [found[i] for i in ids]
    for message in branch:
        message.versions = tree.versions(message.pk)  # type: ignore[attr-defined]
    return branch


def engine_messages(
    conversation: Conversation, new_user_text: str | None = None, branch: list[Message] | None = None
) -> list[dict[str, str]]:
    """System prompt, then the user and assistant turns so far (a stopped answer counts as said), then
    the new user message: what the chat template renders. `branch`: the turns (default: the branch shown)."""
    messages = []
    if conversation.system_prompt:
        messages.append({"role": "system", "content": conversation.system_prompt})
    for message in history(conversation) if branch is None else branch:
        if message.role == Message.Role.SYSTEM or (message.status == Message.Status.ERROR):
            continue
        if message.role == Message.Role.ASSISTANT and not message.content:
            continue
        messages.append({"role": message.role, "content": message.content})
    if new_user_text is not None:
        messages.append({"role": "user", "content": new_user_text})
    return messages
