"""Phrase rules in languages other than English.

Latin-script rules match the ``words`` view (accents stripped, look-alikes
folded); Cyrillic, CJK, Korean and Arabic rules match the ``native`` view, where
look-alike folding would garble them, and are gated by substrings rather than
words (CJK has no spaces).
"""

from __future__ import annotations

from secmw.inspect.rules import Rule, words


def _romance(verbs: str, fill: str, mine: str, nouns: str, prior: str) -> str:
    """Verb + (articles) + noun + qualifier, or verb + possessive + noun.

    In these languages the imperative is also the third person ("il ignore les
    regles" describes someone), so a bare "verb the rules" is not an attack; a
    qualifier ("precedentes") or a possessive addressing the model ("tes") is.
    """
    return (
        rf"\b(?:{verbs}) (?:(?:{fill}) )*(?:{nouns}) (?:{prior})\b"
        rf"|\b(?:{verbs}) (?:(?:{fill}) )*(?:{mine}) (?:(?:{fill}) )*(?:{nouns})\b"
    )


LATIN_OTHER = (
    Rule(
        "fr.ignore_previous",
        "override_phrase",
        0.9,
        _romance(
            "ignore[zr]?|ignores|oublie[zr]?|ne (?:tiens|tenez) pas compte (?:de|des)|fais abstraction de|faites abstraction de|ne suis pas|ne suivez pas",
            "toutes|tous|tout|les|ces|des|de|l|d",
            "tes|vos|ton|votre",
            "instructions?|consignes?|regles?|directives?|indications?|ordres?|commandes?",
            "precedentes?|anterieures?|ci dessus|d avant|initiales?|originales?|du systeme|systeme|donnees? (?:auparavant|avant|precedemment)|recues?",
        ),
        words("ignore ignorez ignorer ignores oublie oubliez oublier ne fais faites"),
    ),
    Rule(
        "fr.ignore_everything",
        "override_phrase",
        0.85,
        r"\b(?:ignore[zr]?|oublie[zr]?) (?:tout|tout ce qui precede|tout ce qu on t a dit|tout ce que tu sais|ce qui precede)\b",
        words("ignore ignorez ignorer oublie oubliez oublier"),
    ),
    Rule(
        "de.ignore_previous",
        "override_phrase",
        0.9,
        r"\b(?:ignoriere|ignorieren sie|vergiss|vergesst|vergessen sie|missachte|missachten sie|befolge nicht|befolgen sie nicht) (?:(?:alle|alles|die|deine|ihre|sämtliche|samtliche|bisherigen|vorherigen|vorigen|obigen|fruheren|frueheren|vorangegangenen|vorhergehenden|ursprunglichen|urspruenglichen|bis dahin) )*(?:anweisungen|anweisung|instruktionen|befehle|regeln|vorgaben|anordnungen|richtlinien|systemanweisungen|systemprompt|anleitungen)\b",
        words(
            "ignoriere ignorieren vergiss vergesst vergessen missachte missachten befolge befolgen"
        ),
    ),
    Rule(
        "de.ignore_everything",
        "override_phrase",
        0.85,
        r"\b(?:ignorier(?:e|en)?|vergiss|vergessen sie) (?:alles|alles bisherige|alles vorherige|alles was (?:dir|ihnen) gesagt wurde|alles oben)\b",
        words("ignoriere ignorieren ignorier vergiss vergessen"),
    ),
    Rule(
        "de.void",
        "override_phrase",
        0.85,
        r"\b(?:setze|setzen sie) (?:alle )?(?:vorherigen |bisherigen )?(?:anweisungen|regeln|befehle) au(?:ss|s)er kraft\b|\b(?:alle )?(?:vorherigen|bisherigen) (?:anweisungen|regeln) (?:sind|gelten) (?:nicht mehr|ungultig|aufgehoben)\b",
        words("setze setzen alle vorherigen bisherigen"),
    ),
    Rule(
        "es.ignore_previous",
        "override_phrase",
        0.9,
        _romance(
            "ignora|ignorar|ignore|ignoren|olvida|olvide|olvidar|olviden|omite|omita|desestima|haz caso omiso (?:de|a)|hagan caso omiso (?:de|a)|no sigas|no siga|no sigan|no obedezcas",
            "todas|todos|las|los|estas|esas|de|del|el|la",
            "tus|sus|su|tu",
            "instrucciones|instruccion|indicaciones|reglas|ordenes|directrices|normas|comandos|prompt",
            "anteriores|previas|de arriba|iniciales|originales|del sistema|recibidas|dadas (?:antes|anteriormente)",
        ),
        words(
            "ignora ignorar ignore ignoren olvida olvide olvidar olviden omite omita desestima haz hagan no"
        ),
    ),
    Rule(
        "es.ignore_everything",
        "override_phrase",
        0.85,
        r"\b(?:ignora|olvida|olvide|ignore) (?:todo|todo lo anterior|lo anterior|todo lo que te dijeron|todo lo que sabes)\b",
        words("ignora olvida olvide ignore"),
    ),
    Rule(
        "it.ignore_previous",
        "override_phrase",
        0.9,
        _romance(
            "ignora|ignorate|ignori|dimentica|dimenticate|dimentichi|non seguire|non seguite|non rispettare",
            "tutte|tutti|le|i|queste|delle|di|gli",
            "tue|tuoi|sue|suoi|vostre",
            "istruzioni|regole|indicazioni|direttive|ordini|comandi|prompt",
            "precedenti|sopra|di sopra|iniziali|originali|del sistema|ricevute|date (?:prima|finora)",
        ),
        words("ignora ignorate ignori dimentica dimenticate dimentichi non"),
    ),
    Rule(
        "it.ignore_everything",
        "override_phrase",
        0.85,
        r"\b(?:ignora|dimentica|dimenticate) (?:tutto|tutto quanto|tutto cio che precede|quanto sopra)\b",
        words("ignora dimentica dimenticate"),
    ),
    Rule(
        "pt.ignore_previous",
        "override_phrase",
        0.9,
        _romance(
            "ignore|ignora|ignorar|ignorem|esqueca|esquece|esquecam|desconsidere|desconsidera|nao siga|nao sigas|nao obedeca",
            "todas|todos|as|os|estas|essas|de|das",
            "suas|tuas|seus|teus",
            "instrucoes|instrucao|regras|orientacoes|ordens|diretrizes|comandos|prompt",
            "anteriores|acima|previas|iniciais|originais|do sistema|recebidas|dadas (?:antes|anteriormente)",
        ),
        words(
            "ignore ignora ignorar ignorem esqueca esquece esquecam desconsidere desconsidera nao"
        ),
    ),
    Rule(
        "nl.ignore_previous",
        "override_phrase",
        0.9,
        r"\b(?:negeer|negeren|vergeet|vergeten|volg niet|volg geen) (?:(?:alle|al|de|je|jouw|uw|deze|eerdere|vorige|voorgaande|bovenstaande|oorspronkelijke) )*(?:instructies|instructie|opdrachten|regels|richtlijnen|aanwijzingen|commando s|prompt)\b",
        words("negeer negeren vergeet vergeten volg"),
    ),
    Rule(
        "pl.ignore_previous",
        "override_phrase",
        0.9,
        r"\b(?:zignoruj|ignoruj|zapomnij|nie stosuj sie do) (?:(?:wszystkie|wszystkich|poprzednie|poprzednich|wczesniejsze|wczesniejszych|swoje|twoje|te) )*(?:instrukcje|instrukcji|polecenia|polecen|zasady|zasad|reguly|regul)\b",
        words("zignoruj ignoruj zapomnij nie"),
    ),
    Rule(
        "multi.prior_noun",
        "override_phrase",
        0.35,
        r"\b(?:instructions|consignes|instrucciones|istruzioni|instrucoes|anweisungen) (?:precedentes|anteriores|precedenti|anterieures)\b|\bvorherigen anweisungen\b",
        words("instructions consignes instrucciones istruzioni instrucoes anweisungen vorherigen"),
    ),
)

# -- non-Latin scripts (matched on the view without look-alike folding) -----------

NATIVE = (
    Rule(
        "ru.ignore_previous",
        "override_phrase",
        0.9,
        r"(?:игнорируй|игнорируйте|проигнорируй|проигнорируйте|забудь|забудьте|не обращай внимания на|не обращайте внимания на|не следуй|не следуйте|отбрось|отмени) (?:(?:все|всё|свои|твои|ваши|эти|предыдущие|прежние|вышеуказанные|вышеизложенные|старые|изначальные|системные|данные ранее|ранее данные) )*(?:инструкции|инструкциям|указания|указаниям|правила|правилам|команды|командам|директивы|установки|промпт)",
        ("игнор", "забуд", "не обращ", "не след", "отбрось", "отмени"),
        native=True,
    ),
    Rule(
        "ru.ignore_everything",
        "override_phrase",
        0.85,
        r"(?:игнорируй|забудь|забудьте) (?:всё|все) (?:что было (?:выше|сказано)|выше|ранее|предыдущее)",
        ("игнор", "забуд"),
        native=True,
    ),
    Rule(
        "uk.ignore_previous",
        "override_phrase",
        0.9,
        r"(?:ігноруй|ігноруйте|забудь|забудьте) (?:(?:всі|усі|попередні|свої|ці) )*(?:інструкції|вказівки|правила|команди)",  # noqa: RUF001 - Ukrainian
        ("ігнор", "забуд"),
        native=True,
    ),
    Rule(
        "zh.ignore_previous",
        "override_phrase",
        0.9,
        r"(?:忽略|忽视|無視|无视|忽略掉|不要理会|不要理會|不用理会|忘记|忘記|忘掉|放弃|放棄|不要遵守|不要遵循|别管)\s*(?:掉)?(?:你)?(?:之前|以前|先前|上面|上述|前面|此前|以上|原来|原來|原有|所有|全部|一切|系统|系統)?(?:的)?(?:所有|全部|一切)?(?:的)?(?:指令|指示|说明|說明|规则|規則|提示|命令|要求|设定|設定|限制|提示词|提示詞)",
        ("忽", "無視", "无视", "理会", "理會", "忘", "放弃", "放棄", "遵守", "遵循", "别管"),
        native=True,
    ),
    Rule(
        "ja.ignore_previous",
        "override_phrase",
        0.9,
        r"(?:以前|前|上記|これまで|先ほど|今まで|最初|元|システム)の(?:すべての|全ての|全部の)?(?:指示|命令|ルール|指令|設定|プロンプト|制約)(?:は|を|も)?(?:すべて|全て|全部)?(?:無視|忘れ)|(?:指示|命令|ルール)を(?:すべて|全て)?(?:無視|忘れ)",
        ("無視", "忘れ"),
        native=True,
    ),
    Rule(
        "ko.ignore_previous",
        "override_phrase",
        0.9,
        r"(?:이전|앞의|위의|기존|모든|지금까지의|시스템)\s*(?:의\s*)?(?:모든\s*)?(?:지시|지침|명령|규칙|지시사항|프롬프트)(?:을|를|은|는|들을|들은)?\s*(?:모두\s*)?(?:무시|잊어)",
        ("무시", "잊어"),
        native=True,
    ),
    Rule(
        "ar.ignore_previous",
        "override_phrase",
        0.9,
        r"(?:تجاهل|انس|إنس|لا\sتتبع)\s+(?:(?:كل|جميع|جميعَ)\s+)?(?:التعليمات|الأوامر|القواعد|التوجيهات)(?:\s+(?:السابقة|الأولى|أعلاه))?",
        ("تجاهل", "انس", "إنس", "لا تتبع"),
        native=True,
    ),
)


__all__ = ["LATIN_OTHER", "NATIVE"]
