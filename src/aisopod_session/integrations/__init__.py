"""Session stores for agent frameworks, backed by aisopod-session.

Each integration lives in its own module and imports its framework only when that module is
imported (``import aisopod_session`` never does):

* :mod:`aisopod_session.integrations.openai_agents`: ``AisopodSession``, a ``Session`` of the
  OpenAI Agents SDK (extra ``aisopod-session[openai-agents]``).
* :mod:`aisopod_session.integrations.adk`: ``AisopodSessionService``, a ``BaseSessionService`` of
  Google ADK (extra ``aisopod-session[adk]``).
* :mod:`aisopod_session.integrations.langchain`: ``AisopodChatMessageHistory``, a
  ``BaseChatMessageHistory`` of LangChain (extra ``aisopod-session[langchain]``; deprecated
  upstream).
* :mod:`aisopod_session.integrations.langgraph`: ``AisopodSaver``, a LangGraph checkpointer
  whose threads are sessions (extra ``aisopod-session[langgraph]``).

Each is built in one line from a URL (``AisopodSession(sid, "sqlite:///…")``,
``AisopodSessionService.from_url(…)``, ``AisopodChatMessageHistory(sid, "sqlite:///…")``,
``AisopodSaver.from_url(…)``) and then owns its store, or shares a store it is given.

See ``docs/integrations/`` for the one-line switch and how each framework's ids map onto a
:class:`~aisopod_session.SessionKey`.
"""
