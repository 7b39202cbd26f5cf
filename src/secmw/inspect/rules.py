"""The English phrase rules: override, role-play, prompt-leak, concealment, exfiltration.

Patterns are written in plain lower-case text without accents, one space between
words, against the ``words`` view (punctuation is a space there, so ``don't``
reads ``don t``). At compile time a space becomes "one or more spaces" and the
view's letter folds are applied, so a pattern never has to spell leet variants.

Each rule names its ``triggers``: words of which at least one must occur in the
text for the rule's regex to run at all. That set lookup, not the regexes, is
what a clean string costs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    """One phrase detector: a pattern, the signal kind it raises, and its weight.

    ``triggers`` are the words a match can start with; ``requires``, when set,
    are words of which one must also occur somewhere in the text.
    """

    id: str
    kind: str
    score: float
    pattern: str
    triggers: tuple[str, ...]
    native: bool = False
    requires: tuple[str, ...] = ()


def words(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of ``text`` (trigger lists are written this way)."""
    return tuple(text.split())


# -- English -----------------------------------------------------------------

_IGNORE = "ignore|disregard|forget|dismiss|discard|neglect|skip|omit|nevermind|never mind|set aside|put aside|throw out|abandon"
# "Don't forget the previous instructions" reinforces them: an override verb right
# after a negation is not an override (fixed-width look-behinds, one per spelling;
# "[ ]" because the rule compiler widens literal spaces, which a look-behind cannot take).
_NOT_NEGATED = "(?<!don[ ]t[ ])(?<!do[ ]not[ ])(?<!dont[ ])(?<!never[ ])(?<!must[ ]not[ ])"
_IGNORE_T = words(
    "ignore disregard forget dismiss discard neglect skip omit nevermind never set put throw abandon"
)
_NOT_FOLLOW = "(?:do not|don t|dont|stop|no longer|never|cease) (?:follow|following|obey|obeying|heed|heeding|adhere to|adhering to)"
_FILL = "(?:(?:all|any|every|each|of|the|your|these|those|its|their|such|entire|whole|earlier) )*"
_PRIOR = "(?:previous|previously given|prior|preceding|above|earlier|former|foregoing|initial|original|old|past|system|developer|safety|preset|pre set|built in|hidden|usual|normal)"
_NOUN = "(?:instructions?|instruction set|prompts?|system prompt|rules?|directives?|guidelines?|guidance|commands?|orders|context|constraints?|restrictions?|programming|polic(?:y|ies)|filters?|guardrails?|safeguards?|training|directions?|tasks?|requests?)"
_NOUN_T = words(
    "instructions instruction prompts prompt system rules rule directives directive guidelines "
    "guideline guidance commands command orders context constraints constraint restrictions "
    "restriction programming policy policies filters filter guardrails guardrail safeguards "
    "safeguard training directions direction tasks task requests request"
)
_AI = "(?:ai|assistant|agent|llm|language model|large language model|chatbot|chat bot|model|gpt|chatgpt|claude|copilot|gemini|bot|ai model|ai assistant|ai agent)"
_LOOT = "(?:api keys?|keys?|passwords?|passwd|passphrases?|secrets?|tokens?|credentials?|creds|private keys?|ssh keys?|id rsa|env|dotenv|environment variables?|env vars?|cookies?|session ids?|session tokens?|access keys?|secret access keys?|bearer tokens?|auth headers?|authorization headers?|system prompt|conversation history|chat history|full conversation|conversation|chat log|chat transcript|user data|personal data|credit card numbers?|card numbers?|ssns?|social security numbers?|wallet seed|seed phrase|mnemonic)"
_LOOT_CORE = "(?:api keys?|passwords?|passwd|secrets?|tokens?|credentials?|creds|private keys?|ssh keys?|cookies?|env vars?|environment variables?|keys)"
_LOOT_WORDS = words(
    "key keys password passwords passwd passphrase passphrases secret secrets token tokens "
    "credential credentials creds rsa env dotenv environment vars cookie cookies session "
    "bearer header headers prompt history conversation log transcript data card ssn ssns "
    "security seed mnemonic"
)
_DESTINATION = "(?:http|https|www|url|webhook|endpoint|server|address|email|attacker|external|remote|pastebin|ngrok|requestbin|discord)"
_LOOT_T = words(
    "api password passwords passwd secret secrets token tokens credential credentials creds "
    "private ssh cookie cookies env environment keys"
)
_AI_T = words(
    "ai assistant agent llm language large chatbot chat model gpt chatgpt claude copilot gemini bot"
)
_SEND = "(?:send|post|upload|exfiltrate|exfil|forward|leak|email|e mail|mail|transmit|transfer|copy|append|include|embed|attach|share|submit|curl|wget|push|dump|paste|beacon|report|relay|deliver)"
_SEND_T = words(
    "send post upload exfiltrate exfil forward leak email mail transmit transfer copy append "
    "include embed attach share submit curl wget push dump paste beacon report relay "
    "deliver"
)

ENGLISH = (
    Rule(
        "en.ignore_previous",
        "override_phrase",
        0.9,
        rf"\b{_NOT_NEGATED}(?:{_IGNORE}|{_NOT_FOLLOW}) {_FILL}{_PRIOR} (?:(?:and|or) {_PRIOR} )?{_NOUN}\b",
        (*_IGNORE_T, *words("do don dont stop no never cease")),
    ),
    Rule(
        "en.ignore_instructions_above",
        "override_phrase",
        0.9,
        rf"\b{_NOT_NEGATED}(?:{_IGNORE}|{_NOT_FOLLOW}) {_FILL}{_NOUN} (?:above|before this|before that|so far|given (?:to you )?(?:above|before|earlier|previously)|you (?:were|have been) given|you received|you got)\b",
        (*_IGNORE_T, *words("do don dont stop no never cease")),
    ),
    Rule(
        "en.ignore_everything",
        "override_phrase",
        0.85,
        rf"\b{_NOT_NEGATED}(?:{_IGNORE}) (?:all |about )?(?:everything|anything|all|what) (?:that )?(?:above|before|prior|previously|earlier|said|you (?:were|have been|ve been) (?:told|given|taught|instructed)|you know|in your (?:system prompt|instructions))\b",
        _IGNORE_T,
    ),
    Rule(
        "en.ignore_what_came_before",
        "override_phrase",
        0.85,
        rf"\b{_NOT_NEGATED}(?:{_IGNORE}) (?:whatever|any|all|the|every) (?:of the )?{_NOUN} (?:that )?(?:came|come|was given|were given|you got|you received|preceded this|precedes this|came earlier)(?: before| earlier| previously| above| first)?\b",
        _IGNORE_T,
    ),
    Rule(
        "en.ignore_the_above",
        "override_phrase",
        0.8,
        rf"\b(?:{_IGNORE}) (?:all of |everything )?the (?:above|preceding|foregoing)\b",
        _IGNORE_T,
    ),
    Rule(
        "en.ignore_your_rules",
        "override_phrase",
        0.85,
        rf"\b(?:{_IGNORE}|{_NOT_FOLLOW}|break|violate) (?:all |any |each )?(?:of )?your (?:own )?(?:{_PRIOR} )?{_NOUN}\b",
        (*_IGNORE_T, *words("do don dont stop no never cease"), *words("break violate")),
    ),
    Rule(
        "en.instructions_void",
        "override_phrase",
        0.85,
        rf"\b(?:{_PRIOR}|your) (?:{_PRIOR} )?{_NOUN} (?:are|were|have been|is|has been) (?:now )?(?:cancell?ed|revoked|void|null and void|obsolete|overridden|overwritten|replaced|superseded|invalid|suspended|lifted|waived|no longer (?:valid|apply|applicable|relevant|in effect))\b",
        words(
            "previous previously prior preceding above earlier former foregoing initial original old past system developer safety preset pre built hidden usual normal your"
        ),
    ),
    Rule(
        "en.no_longer_apply",
        "override_phrase",
        0.75,
        rf"\b{_NOUN} (?:\w+ ){{0,2}}(?:no longer|don t|do not|does not|doesn t|won t) appl(?:y|ies) to you\b",
        _NOUN_T,
    ),
    Rule(
        "en.override_your_safety",
        "override_phrase",
        0.8,
        r"\b(?:override|overrule|bypass|circumvent|disable|turn off|switch off|deactivate|remove|evade|get around) (?:all |any )?(?:of )?your (?:own )?(?:safety |content |ethical |moral |security |built in )?(?:rules|restrictions|filters?|guardrails?|guidelines|polic(?:y|ies)|safeguards?|protections?|limitations|constraints|programming|alignment|training|censorship)\b",
        words(
            "override overrule bypass circumvent disable turn switch deactivate remove evade get"
        ),
    ),
    Rule(
        "en.override_safety",
        "override_phrase",
        0.55,
        r"\b(?:override|overrule|bypass|circumvent|disable|evade) (?:all |any |the )?(?:safety|content|ethical|moral) (?:rules|restrictions|filters?|guardrails?|guidelines|polic(?:y|ies)|safeguards?|protections?|limitations|constraints|checks|measures)\b",
        words("override overrule bypass circumvent disable evade"),
    ),
    Rule(
        "en.you_are_now",
        "role_override",
        0.8,
        r"\byou (?:are|re) (?:now|no longer) (?:an? |in |the )?(?:dan|unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|amoral|free from|developer mode|god mode|admin mode|sudo mode|without (?:any )?(?:restrictions|limits|rules|filters|guidelines)|(?:an? )?(?:ai|assistant|chatbot|language model|bound|restricted|limited|required|obligated))\b",
        words("you"),
    ),
    Rule("en.do_anything_now", "role_override", 0.8, r"\bdo anything now\b", words("do")),
    Rule(
        "en.mode_enabled",
        "role_override",
        0.8,
        r"\b(?:god|jailbreak|jailbroken|dan|unrestricted|unfiltered|evil|uncensored) mode (?:is )?(?:now )?(?:enabled|activated|active|on|unlocked|engaged)\b|\b(?:enable|activate|enter|unlock|switch to) (?:the )?(?:god|jailbreak|dan|unrestricted|unfiltered|evil|uncensored) mode\b",
        words(
            "god jailbreak jailbroken dan unrestricted unfiltered evil uncensored enable activate enter unlock switch"
        ),
    ),
    Rule(
        "en.dev_mode_enabled",
        "role_override",
        0.5,
        r"\b(?:developer|dev|debug|admin|sudo|maintenance) mode (?:is )?(?:now )?(?:enabled|activated|active|on|unlocked|engaged)\b",
        words("developer dev debug admin sudo maintenance"),
    ),
    Rule(
        "en.pretend_no_rules",
        "role_override",
        0.85,
        r"\b(?:pretend|imagine|act as if|behave as if|assume) (?:that )?you (?:are|were|have|had|re) (?:no|not bound by|free from|freed from|without|exempt from|no longer bound by) (?:(?:any|all|of|your|the) )*(?:rules|restrictions|limits|limitations|guidelines|filters|ethics|morals|content polic(?:y|ies)|polic(?:y|ies)|programming|censorship)\b",
        words("pretend imagine act behave assume"),
    ),
    Rule(
        "en.act_as_unrestricted",
        "role_override",
        0.85,
        rf"\b(?:act|behave|respond|answer|reply|roleplay|role play|pose) as (?:an? )?(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|evil|unethical|rogue) (?:{_AI}|version|persona|character|mode)\b",
        words("act behave respond answer reply roleplay role pose"),
    ),
    Rule(
        "en.without_restrictions",
        "override_phrase",
        0.45,
        r"\bwithout (?:any )?(?:ethical|moral|safety|content) (?:restrictions|guidelines|filters|limitations|constraints|considerations|boundaries|polic(?:y|ies))\b",
        words("without"),
    ),
    Rule(
        "en.from_now_on",
        "role_override",
        0.45,
        r"\b(?:from now on|starting now|henceforth) you (?:are|will|must|shall|should|have to|re going to|will only|must only)\b",
        words("from starting henceforth"),
    ),
    Rule(
        "en.new_system_instructions",
        "instruction_injection",
        0.7,
        r"\b(?:new|updated|revised|real|actual|true|override|overriding|hidden|secret) (?:system|admin|administrator|developer|root) (?:instructions?|prompt|message|directives?|override)\b",
        words("new updated revised real actual true override overriding hidden secret"),
    ),
    Rule(
        "en.your_new_task",
        "instruction_injection",
        0.7,
        r"\byour (?:new|real|actual|true|only|updated|next) (?:instructions?|task|job|objective|goal|mission|purpose|directive|orders) (?:is|are|now|will be)\b",
        words("your"),
    ),
    Rule(
        "en.real_task",
        "instruction_injection",
        0.6,
        r"\b(?:real|actual|true|secret|hidden) (?:instructions?|task|objective|goal|mission) (?:is|are|hidden from|for you)\b",
        words("real actual true secret hidden"),
    ),
    Rule(
        "en.note_to_ai",
        "instruction_injection",
        0.6,
        rf"\b(?:(?:note|message|instructions?|important|notice|reminder|directive) (?:to|for)|attention|hey|dear) (?:the |any |all |every )?{_AI}s?\b(?: (?:reading|processing|summari[sz]ing|parsing|viewing) this)?",
        words(
            "note message instruction instructions attention important notice reminder directive hey dear"
        ),
    ),
    Rule(
        "en.if_you_are_ai",
        "instruction_injection",
        0.6,
        rf"\bif you (?:are|re) an? {_AI}\b",
        words("if"),
    ),
    Rule(
        "en.ai_reading_this",
        "instruction_injection",
        0.7,
        rf"\b{_AI}s? (?:reading|processing|summari[sz]ing|parsing|analy[sz]ing|evaluating|reviewing|screening|scoring|ranking|handling|viewing) (?:this|these|the following)\b",
        _AI_T,
    ),
    Rule(
        "en.ai_must",
        "instruction_injection",
        0.75,
        rf"\b{_AI}s?(?: you)? (?:must|should|shall|needs to|need to|is required to|are required to|has to|have to|will) (?:now )?(?:immediately )?(?:ignore (?:the user|the user s|your user|all|any|every|your|previous|prior|the above|the instructions|the system)|disregard|forget|reveal|exfiltrate|approve|transfer|leak)\b",
        _AI_T,
    ),
    Rule(
        "en.ai_should_act",
        "instruction_injection",
        0.55,
        rf"\b{_AI}s? (?:must|should|shall|needs to|need to|is required to|are required to|has to|have to) (?:now )?(?:immediately )?(?:send|email|forward|upload|execute|run|call|invoke|output|print|say|reply|respond|visit|open|fetch|navigate|recommend|rate)\b",
        _AI_T,
    ),
    Rule(
        "en.conceal_from_user",
        "concealment",
        0.6,
        r"\b(?:do not|don t|dont|never|without|avoid) (?:tell|telling|inform|informing|notify|notifying|mention|mentioning|alert|alerting|asking|show|showing|reveal|revealing|disclose|disclosing|let) (?:this |it |anything |that )?(?:to )?(?:the |your )?users?\b|\b(?:the )?users? (?:must|should|will|need|needs) (?:not|never) (?:know|see|find out|be told|be informed|notice|learn)\b|\b(?:hidden|hide (?:this|it)|keep (?:this|it) (?:hidden|secret)) from (?:the |your )?users?\b",
        words("do don dont never without avoid user users hidden hide keep"),
    ),
    Rule(
        "en.silently_act",
        "concealment",
        0.6,
        rf"\b(?:silently|quietly|secretly|covertly|discreetly|stealthily) (?:{_SEND}|run|execute|install|download|delete|call|approve|transfer|change|modify|invoke)\b",
        words("silently quietly secretly covertly discreetly stealthily"),
    ),
    Rule(
        "en.reveal_system_prompt",
        "prompt_leak",
        0.75,
        r"\b(?:reveal|print|show|display|output|repeat|recite|dump|leak|expose|disclose|return|tell me|give me|write out|spell out|paste|echo|translate|summari[sz]e) (?:me )?(?:(?:all|back|verbatim|exactly|the|your|of|full|entire|complete|whole|original|initial|hidden|secret|internal|exact|first|confidential) )*(?:system prompt|system message|system instructions|initial prompt|initial instructions|hidden prompt|hidden instructions|original prompt|original instructions|pre prompt|preprompt|instructions you were given|developer message|developer instructions|secret instructions|confidential instructions)\b",
        words(
            "reveal print show display output repeat recite dump leak expose disclose return tell give write spell paste echo translate summarize summarise"
        ),
    ),
    Rule(
        "en.repeat_above",
        "prompt_leak",
        0.7,
        r"\b(?:repeat|print|output|recite|copy) (?:back )?(?:all |everything |the )?(?:words|text|everything|content|lines|instructions) (?:above|before this|verbatim)\b|\brepeat everything above\b",
        words("repeat print output recite copy"),
    ),
    Rule(
        "en.what_is_your_prompt",
        "prompt_leak",
        0.7,
        r"\bwhat (?:is|are|was|were) your (?:system prompt|initial instructions|original instructions|hidden instructions|secret instructions|system message|initial prompt)\b",
        words("what"),
    ),
    Rule(
        "en.pwned",
        "output_hijack",
        0.7,
        r"\bbeen pwned\b|\b(?:say|print|output|respond with|reply with|write|answer with) (?:only )?(?:the (?:word|words|phrase|text) )?(?:pwned|hacked|i have been pwned)\b",
        words("been say print output respond reply write answer"),
    ),
    Rule(
        "en.exfiltrate_secrets",
        "exfiltration",
        0.4,
        rf"\b{_SEND}\b(?: \w+){{0,6}}? (?:(?:all|every|any|your|the|user s|users|their|my|our|of|these|those|his|her) ){{0,3}}{_LOOT}\b",
        _SEND_T,
        requires=_LOOT_WORDS,
    ),
    Rule(
        "en.send_contents",
        "exfiltration",
        0.4,
        rf"\b{_SEND} (?:(?:its|the|their|all|this|that|these|those|of|entire|whole|full) )*(?:contents?|output|outputs|results?|data|file|files|response) (?:\w+ ){{0,6}}?(?:to|into|in) (?:\w+ ){{0,3}}?\w*{_DESTINATION}\b",
        _SEND_T,
        requires=words("content contents output outputs result results data file files response"),
    ),
    Rule(
        "en.harvest_secrets",
        "exfiltration",
        0.4,
        rf"\b(?:collect|gather|harvest|extract|grab|steal|scrape|exfiltrate) (?:(?:all|every|any|your|the|user s|users|their|of|from) ){{0,3}}{_LOOT}\b",
        words("collect gather harvest extract grab steal scrape exfiltrate"),
        requires=_LOOT_WORDS,
    ),
    Rule(
        "en.secrets_to",
        "exfiltration",
        0.4,
        rf"\b{_LOOT_CORE} (?:\w+ ){{0,4}}(?:to|into) (?:\w+ ){{0,2}}\w*{_DESTINATION}\b",
        _LOOT_T,
    ),
)


# Words that mark a text as *talking about* attacks (documentation, tests, reviews);
# a quoted match in such a text is discounted (see the scanner).
META_WORDS = frozenset(
    words(
        "injection injections jailbreak jailbreaks attack attacks attacker attackers example "
        "examples payload payloads detect detects detection detector detectors test tests "
        "malicious adversarial classifier classifiers benchmark dataset corpus red team "
        "mitigation mitigate eg"
    )
)

__all__ = ["ENGLISH", "META_WORDS", "Rule", "words"]
