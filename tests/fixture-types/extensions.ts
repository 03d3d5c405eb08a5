// Payload types for the v2 shapes that @meeting-baas/sdk 6.0.5 (the newest on npm) does not
// declare, built on the SDK's own types so that everything else stays the SDK's. Each one says
// where MeetingBaaS is ahead of the SDK (../shared/MEETINGBAAS.md); nothing here loosens a field
// the SDK declares.
import type { V2 } from "@meeting-baas/sdk";

type StatusChange = V2.BotWebhookStatusChange;
type StatusData = StatusChange["data"];

/** `retrying` (the SDK's generated sources from 6.2.1 on): the attempt that failed is re-queued;
 * `status.attempt` and `status.max` say which attempt comes next and how many there are. */
export type BotWebhookStatusChangeRetrying = Omit<StatusChange, "data"> & {
  data: Omit<StatusData, "status"> & {
    status: StatusData["status"] & { code: "retrying"; attempt: number; max: number };
  };
};

/** `bot.chat_message`: a v2 webhook event MeetingBaaS documents but 6.0.5 has no type for. */
export interface BotWebhookChatMessage {
  event: "bot.chat_message";
  data: {
    bot_id: string;
    event_id: string | null;
    message_id: string;
    sender_id: string;
    sender_name: string;
    sent_at: string;
    text: string;
  };
  extra?: { [key: string]: unknown } | null;
}

/** `calendar.connection_error`: listed among the v2 calendar events, with no type in 6.0.5.
 * Assumed to carry what `calendar.connection_updated` carries (its status is then `error`,
 * `revoked` or `permission_denied`). */
export type CalendarWebhookConnectionError = Omit<V2.CalendarWebhookConnectionUpdated, "event"> & {
  event: "calendar.connection_error";
};

type Completed = V2.CallbackCompleted;
type CompletedData = Completed["data"];

/** A callback as MeetingBaaS's guide shows it (not the SDK): `extra` inside `data` instead of at
 * the top level, the transcript inline (the SDK: a URL), and only some of the fields. */
export interface CallbackCompletedGuide {
  event: Completed["event"];
  data: Pick<CompletedData, "bot_id" | "event_id" | "sent_at"> &
    Partial<Omit<CompletedData, "bot_id" | "event_id" | "sent_at" | "transcription">> & {
      transcription?: unknown[];
      extra?: { [key: string]: unknown } | null;
    };
}
