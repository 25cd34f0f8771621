"""The inbox's words in Russian, Polish and English, and how a page picks its language.

An operator's own ``language`` setting wins; then the browser's Accept-Language; then
the configured default. A key missing in one language falls back to English.
"""
from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("ru", "pl", "en")

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "app": "Complaint inbox", "skip": "Skip to content", "nav": "Main", "nav_inbox": "Inbox",
        "nav_suggestions": "Merge suggestions", "nav_dead": "Dead letters", "nav_audit": "Audit log",
        "logout": "Log out", "login_title": "Log in to the complaint inbox", "username": "User name",
        "password": "Password", "login": "Log in",
        "col_received": "Received", "col_number": "Number", "col_channel": "Channel", "col_customer": "Customer",
        "col_subject": "Complaint", "col_urgency": "Urgency", "col_state": "Status", "col_deadline": "Deadline",
        "no_number": "(no number)", "kind_new": "new", "kind_follow_up": "follow-up", "kind_repeat": "repeat",
        "kind_automatic": "automatic", "unnamed": "(no name)",
        "urgency_immediate": "immediate", "urgency_high": "high", "urgency_normal": "normal",
        "state_open": "open", "state_claimed": "claimed", "state_closed": "closed",
        "list_title": "All complaints", "filters": "Filters", "f_text": "Text", "f_channel": "Channel",
        "any": "any", "f_urgency": "Urgency", "f_state": "Status", "f_language": "Language", "f_since": "From",
        "f_until": "To", "f_overdue": "Only overdue ones", "f_undelivered": "Only those whose number did not reach the customer", "tag_undelivered": "number not delivered", "apply": "Filter", "reset": "Reset filters", "counts": "Per channel", "due_title": "Open registrations by deadline", "due_overdue": "{n} overdue", "due_soon": "{n} due within {m} min", "none": "None.",
        "live_on": "Live: new complaints appear at the top.", "live_off": "Live updates interrupted; reconnecting…",
        "live_new": "New complaint", "live_connecting": "Connecting to live updates…", "empty": "Nothing matches.",
        "older": "Older complaints", "scan_limited": "The search looked at {n} messages and stopped there; older ones have not been searched yet.", "search_on": "Search older messages", "complaint": "Complaint", "text": "Text", "attachments": "Attachments",
        "original": "Original as received", "download_raw": "Download the original",
        "no_original": "The original is not stored.", "ack": "Acknowledgement",
        "ack_recorded": "As sent to the customer:", "ack_rendered": "As the gateway words it for this door:",
        "ack_none": "No acknowledgement (automatic message or no number).",
        "registration_messages": "Messages of this registration", "actions": "Actions", "claim": "Claim",
        "close": "Close", "reopen": "Reopen", "reply_label": "Reply to the customer through their door",
        "send_reply": "Send reply", "note_label": "Internal note", "add_note": "Add note", "history": "History",
        "action_claim": "claimed", "action_reply": "replied", "action_close": "closed", "action_reopen": "reopened",
        "action_note": "note", "action_acknowledgement_failed": "the number did not reach the customer", "facts": "Details", "deadline_acknowledge": "first answer",
        "deadline_respond": "decision", "deadline_technical": "technical case", "deadline_legal": "legal limit", "identities": "Identities", "reply_to": "Answer to",
        "submitted_by": "Submitted by", "automatic": "Automatic message", "yes": "yes", "customer": "Customer",
        "merged_into_note": "This customer has been merged into", "customer_id": "Customer id",
        "registrations": "Complaints", "merges": "Merges", "undone": "undone", "unmerge": "Undo merge",
        "merge_source": "Merge another customer into this one (their customer id)",
        "merge_hint": "The other customer's identities and complaints then belong to this one; it can be undone.",
        "merge": "Merge", "linked_by": "linked by", "accept": "Merge", "reject": "Keep apart",
        "suggestions_help": "One message carried identities of two different customers. Merge them if they are one person.",
        "dead_help": "Messages the gateway could not process. Nothing is lost: fix the cause and replay.",
        "reason": "Reason", "replay": "Replay", "when": "When", "operator": "Operator", "what": "Action",
        "subject_of_action": "On",
        "login_failed": "Wrong user name or password.",
        "locked_out": "Too many failed attempts. Try again in {minutes} min.",
        "login_unavailable": "Logging in is not possible right now. Try again in a minute.",
        "csrf_failed": "The form expired or was not sent from this page. Please try again.",
        "not_found": "Not found.", "claimed_ok": "Claimed.", "closed_ok": "Closed.", "reopened_ok": "Reopened.",
        "note_added": "Note added.", "reply_sent": "Reply sent through {channel}.",
        "reply_refused": "The {channel} door cannot send replies: answer the customer by e-mail or phone ({reply_to}).",
        "reply_unconfigured": "The channel {channel} is not configured on this gateway any more.",
        "reply_failed": "The reply could not be delivered through {channel}: {error}. Nothing was recorded; try again.",
        "text_required": "Please write the text.", "text_too_long": "At most {max} characters.",
        "merged_ok": "Customers merged.", "unmerged_ok": "Merge undone.", "suggestion_rejected": "Kept apart.",
        "replayed_ok": "Replayed: registered as {number}.", "replay_failed": "Still failing: {reason}",
        "invalid_date": "{field}: a date like 2026-01-31 is expected.", "same_customer": "That is the same customer.",
        "unknown_customer": "No such customer: {id}.", "cannot_merge": "Not possible: {reason}",
        "left": "{t} left", "overdue": "overdue by {t}", "d": "d", "h": "h", "min": "min",
    },
    "ru": {
        "app": "Обращения", "skip": "К содержимому", "nav": "Главное меню", "nav_inbox": "Входящие",
        "nav_suggestions": "Предложения объединить", "nav_dead": "Необработанные", "nav_audit": "Журнал",
        "logout": "Выйти", "login_title": "Вход в журнал обращений", "username": "Имя пользователя",
        "password": "Пароль", "login": "Войти",
        "col_received": "Получено", "col_number": "Номер", "col_channel": "Канал", "col_customer": "Клиент",
        "col_subject": "Обращение", "col_urgency": "Срочность", "col_state": "Статус", "col_deadline": "Срок",
        "no_number": "(без номера)", "kind_new": "новое", "kind_follow_up": "дополнение", "kind_repeat": "повтор",
        "kind_automatic": "автоматическое", "unnamed": "(без имени)",
        "urgency_immediate": "немедленно", "urgency_high": "высокая", "urgency_normal": "обычная",
        "state_open": "открыто", "state_claimed": "в работе", "state_closed": "закрыто",
        "list_title": "Все обращения", "filters": "Фильтры", "f_text": "Текст", "f_channel": "Канал",
        "any": "любой", "f_urgency": "Срочность", "f_state": "Статус", "f_language": "Язык", "f_since": "С",
        "f_until": "По", "f_overdue": "Только просроченные", "f_undelivered": "Только те, чей номер не дошёл до клиента", "tag_undelivered": "номер не доставлен", "apply": "Показать", "reset": "Сбросить фильтры", "counts": "По каналам", "due_title": "Открытые обращения по срокам", "due_overdue": "просрочено: {n}", "due_soon": "истекает в ближайшие {m} мин: {n}", "none": "Нет.",
        "live_on": "Новые обращения появляются сверху сами.", "live_off": "Обновление прервано; переподключаемся…",
        "live_new": "Новое обращение", "live_connecting": "Подключаемся к обновлениям…", "empty": "Ничего не найдено.",
        "older": "Более ранние", "scan_limited": "Поиск просмотрел {n} сообщений и остановился; более ранние ещё не просмотрены.", "search_on": "Искать среди более ранних", "complaint": "Обращение", "text": "Текст", "attachments": "Вложения",
        "original": "Оригинал, как получен", "download_raw": "Скачать оригинал",
        "no_original": "Оригинал не сохранён.", "ack": "Подтверждение клиенту",
        "ack_recorded": "Отправлено клиенту:", "ack_rendered": "Текст, который шлюз отправляет в этот канал:",
        "ack_none": "Подтверждения нет (автоматическое сообщение или нет номера).",
        "registration_messages": "Сообщения по этому номеру", "actions": "Действия", "claim": "Взять в работу",
        "close": "Закрыть", "reopen": "Открыть снова", "reply_label": "Ответ клиенту в его канал",
        "send_reply": "Отправить ответ", "note_label": "Внутренняя заметка", "add_note": "Добавить заметку",
        "history": "История", "action_claim": "взято в работу", "action_reply": "ответ", "action_close": "закрыто",
        "action_reopen": "открыто снова", "action_note": "заметка", "action_acknowledgement_failed": "номер не дошёл до клиента", "facts": "Сведения",
        "deadline_acknowledge": "первый ответ", "deadline_respond": "решение", "deadline_technical": "техническое", "deadline_legal": "по закону", "identities": "Контакты",
        "reply_to": "Куда отвечать", "submitted_by": "Подано через", "automatic": "Автоматическое сообщение",
        "yes": "да", "customer": "Клиент", "merged_into_note": "Этот клиент объединён с",
        "customer_id": "Идентификатор клиента", "registrations": "Обращения", "merges": "Объединения",
        "undone": "отменено", "unmerge": "Отменить объединение",
        "merge_source": "Присоединить другого клиента к этому (его идентификатор)",
        "merge_hint": "Контакты и обращения другого клиента перейдут к этому; это можно отменить.",
        "merge": "Объединить", "linked_by": "связаны через", "accept": "Объединить", "reject": "Не объединять",
        "suggestions_help": "Одно сообщение содержало контакты двух разных клиентов. Объедините их, если это один человек.",
        "dead_help": "Сообщения, которые шлюз не смог обработать. Ничего не потеряно: устраните причину и повторите.",
        "reason": "Причина", "replay": "Повторить", "when": "Когда", "operator": "Оператор", "what": "Действие",
        "subject_of_action": "Над чем",
        "login_failed": "Неверное имя пользователя или пароль.",
        "locked_out": "Слишком много неудачных попыток. Повторите через {minutes} мин.",
        "login_unavailable": "Вход сейчас невозможен. Повторите через минуту.",
        "csrf_failed": "Форма устарела или отправлена не с этой страницы. Попробуйте ещё раз.",
        "not_found": "Не найдено.", "claimed_ok": "Взято в работу.", "closed_ok": "Закрыто.",
        "reopened_ok": "Открыто снова.", "note_added": "Заметка добавлена.", "reply_sent": "Ответ отправлен через {channel}.",
        "reply_refused": "Канал {channel} не умеет отправлять ответы: ответьте клиенту по почте или телефону ({reply_to}).",
        "reply_unconfigured": "Канал {channel} больше не настроен в этом шлюзе.",
        "reply_failed": "Ответ не доставлен через {channel}: {error}. Ничего не записано; попробуйте ещё раз.",
        "text_required": "Напишите текст.", "text_too_long": "Не длиннее {max} символов.",
        "merged_ok": "Клиенты объединены.", "unmerged_ok": "Объединение отменено.", "suggestion_rejected": "Оставлены раздельно.",
        "replayed_ok": "Обработано: номер {number}.", "replay_failed": "Снова не удалось: {reason}",
        "invalid_date": "{field}: нужна дата вида 2026-01-31.", "same_customer": "Это тот же клиент.",
        "unknown_customer": "Нет такого клиента: {id}.", "cannot_merge": "Невозможно: {reason}",
        "left": "осталось {t}", "overdue": "просрочено на {t}", "d": "д", "h": "ч", "min": "мин",
    },
    "pl": {
        "app": "Reklamacje", "skip": "Przejdź do treści", "nav": "Menu główne", "nav_inbox": "Skrzynka",
        "nav_suggestions": "Propozycje scalenia", "nav_dead": "Nieprzetworzone", "nav_audit": "Dziennik",
        "logout": "Wyloguj", "login_title": "Logowanie do skrzynki reklamacji", "username": "Nazwa użytkownika",
        "password": "Hasło", "login": "Zaloguj",
        "col_received": "Otrzymano", "col_number": "Numer", "col_channel": "Kanał", "col_customer": "Klient",
        "col_subject": "Reklamacja", "col_urgency": "Pilność", "col_state": "Status", "col_deadline": "Termin",
        "no_number": "(bez numeru)", "kind_new": "nowa", "kind_follow_up": "uzupełnienie", "kind_repeat": "ponowienie",
        "kind_automatic": "automatyczna", "unnamed": "(bez nazwiska)",
        "urgency_immediate": "natychmiast", "urgency_high": "wysoka", "urgency_normal": "zwykła",
        "state_open": "otwarta", "state_claimed": "w toku", "state_closed": "zamknięta",
        "list_title": "Wszystkie reklamacje", "filters": "Filtry", "f_text": "Tekst", "f_channel": "Kanał",
        "any": "dowolny", "f_urgency": "Pilność", "f_state": "Status", "f_language": "Język", "f_since": "Od",
        "f_until": "Do", "f_overdue": "Tylko przeterminowane", "f_undelivered": "Tylko te, których numer nie dotarł do klienta", "tag_undelivered": "numer nie doręczony", "apply": "Filtruj", "reset": "Wyczyść filtry", "counts": "Według kanałów", "due_title": "Otwarte zgłoszenia według terminów", "due_overdue": "po terminie: {n}", "due_soon": "termin mija w ciągu {m} min: {n}", "none": "Brak.",
        "live_on": "Nowe reklamacje pojawiają się na górze same.", "live_off": "Aktualizacje przerwane; łączenie…",
        "live_new": "Nowa reklamacja", "live_connecting": "Łączenie z aktualizacjami…", "empty": "Nic nie pasuje.",
        "older": "Starsze reklamacje", "scan_limited": "Wyszukiwanie przejrzało {n} wiadomości i zatrzymało się; starszych jeszcze nie przejrzano.", "search_on": "Szukaj wśród starszych", "complaint": "Reklamacja", "text": "Tekst", "attachments": "Załączniki",
        "original": "Oryginał, jak otrzymano", "download_raw": "Pobierz oryginał",
        "no_original": "Oryginał nie jest przechowywany.", "ack": "Potwierdzenie",
        "ack_recorded": "Wysłane klientowi:", "ack_rendered": "Tekst, który bramka wysyła tym kanałem:",
        "ack_none": "Brak potwierdzenia (wiadomość automatyczna lub brak numeru).",
        "registration_messages": "Wiadomości tej reklamacji", "actions": "Działania", "claim": "Przejmij",
        "close": "Zamknij", "reopen": "Otwórz ponownie", "reply_label": "Odpowiedź klientowi jego kanałem",
        "send_reply": "Wyślij odpowiedź", "note_label": "Notatka wewnętrzna", "add_note": "Dodaj notatkę",
        "history": "Historia", "action_claim": "przejęta", "action_reply": "odpowiedź", "action_close": "zamknięta",
        "action_reopen": "otwarta ponownie", "action_note": "notatka", "action_acknowledgement_failed": "numer nie dotarł do klienta", "facts": "Szczegóły",
        "deadline_acknowledge": "pierwsza odpowiedź", "deadline_respond": "decyzja", "deadline_technical": "techniczna", "deadline_legal": "ustawowy", "identities": "Dane kontaktowe",
        "reply_to": "Odpowiedź na", "submitted_by": "Złożona przez", "automatic": "Wiadomość automatyczna",
        "yes": "tak", "customer": "Klient", "merged_into_note": "Ten klient został scalony z",
        "customer_id": "Identyfikator klienta", "registrations": "Reklamacje", "merges": "Scalenia",
        "undone": "cofnięte", "unmerge": "Cofnij scalenie",
        "merge_source": "Scal innego klienta z tym (jego identyfikator)",
        "merge_hint": "Dane i reklamacje drugiego klienta przejdą do tego; można to cofnąć.",
        "merge": "Scal", "linked_by": "powiązani przez", "accept": "Scal", "reject": "Nie scalaj",
        "suggestions_help": "Jedna wiadomość zawierała dane dwóch różnych klientów. Scal ich, jeśli to jedna osoba.",
        "dead_help": "Wiadomości, których bramka nie przetworzyła. Nic nie zginęło: usuń przyczynę i ponów.",
        "reason": "Przyczyna", "replay": "Ponów", "when": "Kiedy", "operator": "Operator", "what": "Działanie",
        "subject_of_action": "Czego dotyczy",
        "login_failed": "Błędna nazwa użytkownika lub hasło.",
        "locked_out": "Zbyt wiele nieudanych prób. Spróbuj za {minutes} min.",
        "login_unavailable": "Logowanie jest teraz niemożliwe. Spróbuj za minutę.",
        "csrf_failed": "Formularz wygasł lub nie został wysłany z tej strony. Spróbuj ponownie.",
        "not_found": "Nie znaleziono.", "claimed_ok": "Przejęta.", "closed_ok": "Zamknięta.",
        "reopened_ok": "Otwarta ponownie.", "note_added": "Notatka dodana.", "reply_sent": "Odpowiedź wysłana kanałem {channel}.",
        "reply_refused": "Kanał {channel} nie wysyła odpowiedzi: odpowiedz klientowi e-mailem lub telefonicznie ({reply_to}).",
        "reply_unconfigured": "Kanał {channel} nie jest już skonfigurowany w tej bramce.",
        "reply_failed": "Nie udało się wysłać odpowiedzi kanałem {channel}: {error}. Nic nie zapisano; spróbuj ponownie.",
        "text_required": "Wpisz tekst.", "text_too_long": "Najwyżej {max} znaków.",
        "merged_ok": "Klienci scaleni.", "unmerged_ok": "Scalenie cofnięte.", "suggestion_rejected": "Pozostawieni osobno.",
        "replayed_ok": "Przetworzono: numer {number}.", "replay_failed": "Nadal się nie udaje: {reason}",
        "invalid_date": "{field}: oczekiwana data w postaci 2026-01-31.", "same_customer": "To ten sam klient.",
        "unknown_customer": "Nie ma takiego klienta: {id}.", "cannot_merge": "Niemożliwe: {reason}",
        "left": "zostało {t}", "overdue": "po terminie o {t}", "d": "d", "h": "godz.", "min": "min",
    },
}

Translate = Callable[..., str]


def translator(lang: str) -> Translate:
    """``_("key", name=value)``: the text in ``lang``, English when missing, else the key."""
    table = {**STRINGS["en"], **STRINGS.get(lang, {})}

    def _(key: str, **values: object) -> str:
        text = table.get(key)
        if text is None:
            return key.split("_", 1)[1] if key.startswith("deadline_") else key
        return text.format(**values) if values else text

    return _


def pick_language(accept_language: str | None, preferred: str | None, default: str) -> str:
    """The operator's setting, else the best of Accept-Language we speak, else the default."""
    if preferred in LANGUAGES:
        return preferred  # type: ignore[return-value]
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _sep, params = part.strip().partition(";")
        code = tag.strip().split("-")[0].lower()
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if code in LANGUAGES and quality > 0:
            weighted.append((-quality, position, code))
    return min(weighted)[2] if weighted else default


def duration_text(seconds: float, _: Translate) -> str:
    """``2 d 3 h`` / ``5 h 10 min`` / ``7 min``: two units at most, rounded down."""
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} {_('d')} {hours} {_('h')}"
    if hours:
        return f"{hours} {_('h')} {mins} {_('min')}"
    return f"{mins} {_('min')}"
