"""Session stores for agent frameworks, backed by aisopod-session.

Each integration lives in its own module and imports its framework only when that module is
imported (``import aisopod_session`` never does):

* :mod:`aisopod_session.integrations.openai_agents`: ``AisopodSession``, a ``Session`` of the
  OpenAI Agents SDK (extra ``aisopod-session[openai-agents]``).
* :mod:`aisopod_session.integrations.adk`: ``AisopodSessionService``, a ``BaseSessionService`` of
  Google ADK (extra ``aisopod-session[adk]``).
* :mod:`aisopod_session.integrations.langchain`: ``AisopodChatMessageHistory``, a
  ``BaseChatMessageHistory`` of LangChain (extra ``aisopod-session[langchain]``).

See ``docs/integrations/`` for the one-line switch and how each framework's ids map onto a
:class:`~aisopod_session.SessionKey`.
"""
